"""What ``ferry deploy`` does to the store: load a project, check it, record new revisions."""

from __future__ import annotations

from pathlib import Path

from ferry.apispec import Project, RealtimeAPI, TrafficSplitter, load_project, to_server_settings
from ferry.control.store import DeployOutcome, Store
from ferry.errors import ConfigError

__all__ = ["deploy_project"]


def deploy_project(store: Store, path: Path, now: float) -> list[DeployOutcome]:
    """Record every API of the project at ``path`` as the target; the reconciler does the rest.

    Raises ``ConfigError`` (nothing recorded) when the file is invalid, an API cannot be
    served locally, a splitter names an API that is neither in the file nor deployed, or
    an endpoint is already taken by another deployed API.
    """
    project = load_project(path, check_splitter_targets=False)
    _check(store, project)
    root = str(project.root)
    entries: list[RealtimeAPI | TrafficSplitter] = [*project.apis, *project.splitters]
    outcomes = []
    for entry in entries:
        spec = entry.model_dump(mode="json")
        outcome = store.deploy(entry.name, entry.kind, entry.endpoint, spec, root, now)
        if outcome.action != "unchanged":
            store.add_event(entry.name, "info", f"deployed revision {outcome.revision}", now)
        outcomes.append(outcome)
    return outcomes


def _check(store: Store, project: Project) -> None:
    for api in project.apis:
        to_server_settings(api, project.root)  # raises for what ferry cannot serve
    deployed = {record.name: record for record in store.apis() if not record.deleting}
    entries: list[RealtimeAPI | TrafficSplitter] = [*project.apis, *project.splitters]
    names = {entry.name for entry in entries}
    realtime = {api.name for api in project.apis} | {
        name for name, record in deployed.items() if record.kind == "RealtimeAPI"
    }
    for splitter in project.splitters:
        for target in splitter.apis:
            if target.name not in realtime:
                raise ConfigError(
                    f"{project.path}: traffic splitter {splitter.name!r} names api "
                    f"{target.name!r}, which is neither in this file nor deployed"
                )
    for entry in entries:
        for name, record in deployed.items():
            if record.endpoint == entry.endpoint and name != entry.name and name not in names:
                raise ConfigError(
                    f"{project.path}: endpoint {entry.endpoint} of {entry.name!r} is already "
                    f"used by the deployed api {name!r}"
                )
        if entry.name in deployed and deployed[entry.name].kind != entry.kind:
            raise ConfigError(
                f"{project.path}: {entry.name!r} is deployed as a {deployed[entry.name].kind}; "
                f"delete it before deploying a {entry.kind} of that name"
            )
