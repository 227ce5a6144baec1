"""LitServe API, with or without LitServe's request batching.

BENCH_MODEL=model.joblib python litserve_app.py PORT [--batch]
"""

import os
import sys

import joblib
import litserve as ls
import numpy as np


class ClassifierAPI(ls.LitAPI):
    def setup(self, device):
        self.model = joblib.load(os.environ["BENCH_MODEL"])

    def decode_request(self, request):
        return np.asarray(request, dtype=float)

    def predict(self, x):
        return self.model.predict(x)

    def encode_response(self, output):
        return output.tolist()


class BatchedClassifierAPI(ClassifierAPI):
    """Several requests (each a list of rows) merged into one predict call."""

    def batch(self, inputs):
        self._sizes = [len(x) for x in inputs]
        return np.concatenate(inputs)

    def predict(self, x):
        return (self.model.predict(x), self._sizes)

    def unbatch(self, output):
        preds, sizes = output
        out, start = [], 0
        for n in sizes:
            out.append(preds[start : start + n])
            start += n
        return out


if __name__ == "__main__":
    port = int(sys.argv[1])
    if "--batch" in sys.argv:
        api = BatchedClassifierAPI(max_batch_size=64, batch_timeout=0.005)
    else:
        api = ClassifierAPI()
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=2)
    server.run(host="127.0.0.1", port=port, generate_client_file=False, log_level="warning")
