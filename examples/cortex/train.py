"""Train the three iris models the APIs in cortex.yaml serve: python train.py"""

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

MODELS = {
    "forest": RandomForestClassifier(n_estimators=50, random_state=0),
    "logreg": LogisticRegression(max_iter=500),
    "knn": KNeighborsClassifier(n_neighbors=5),
}


def main(out: Path = Path(__file__).parent / "models") -> list[Path]:
    features, target = load_iris(return_X_y=True)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in MODELS.items():
        model.fit(features, target)
        path = out / f"{name}.joblib"
        joblib.dump(model, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for path in main():
        print(f"wrote {path}")
