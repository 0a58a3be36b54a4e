"""One Pinecone API key per app, each with the fewest roles its app needs.

Pinecone gives an API key roles scoped to its project (Pinecone docs: "Understanding
projects", Project roles, https://docs.pinecone.io/admin/projects/understanding-projects;
"Manage API keys", https://docs.pinecone.io/admin/projects/manage-api-keys):
ProjectEditor / ProjectViewer (all project data), ControlPlaneEditor / ControlPlaneViewer
(create, configure, delete / list, describe indexes) and DataPlaneEditor / DataPlaneViewer
(query, fetch, upsert, update, delete / query, fetch, list IDs, index stats). A key with
only data plane roles must reach its index by host, which every app does (PINECONE_HOST).

- frontend: DataPlaneViewer. It queries and fetches, and a stolen key can neither write
  nor delete a record, let alone the index.
- emu: DataPlaneEditor. It upserts and deletes records; it cannot touch the index itself.
- operator (pelican's one-off task: reconcile --repair, migrate-index): DataPlaneEditor.
- Pulumi: the provider's own key (the data layer's pineconeApiKey), the only one that may
  create or delete an index; it is never stored where a task can read it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pinecone_pulumi as pinecone
import pulumi

APP_KEY_ROLES: dict[str, list[str]] = {
    "frontend": ["DataPlaneViewer"],
    "emu": ["DataPlaneEditor"],
    "operator": ["DataPlaneEditor"],
}
# Pinecone docs: Admin API, "Create an API key": a name of 1 to 80 characters.
MAX_KEY_NAME = 80


def require_distinct_keys(names: Sequence[str]):
    """For ``Output.apply`` over the keys in `names` order: refuse two equal keys, naming the
    config keys only (never the values). Returns the keys unchanged.

    Raises ValueError when two keys are the same, or one is empty."""

    def check(values: Sequence[str]) -> list[str]:
        for name, value in zip(names, values, strict=True):
            if not value:
                raise ValueError(f"{name} is empty")
        seen: dict[str, str] = {}
        for name, value in zip(names, values, strict=True):
            if value in seen:
                raise ValueError(f"{seen[value]} and {name} hold the same Pinecone key: give each app a key "
                                 "of its own, and Pulumi its own (docs/deploy.md, \"Pinecone keys\")")
            seen[value] = name
        return list(values)

    return check


def given_app_keys(admin_key: pulumi.Input[str],
                   app_keys: Mapping[str, pulumi.Input[str]]) -> dict[str, pulumi.Output[str]]:
    """The apps' keys as given in config (``pinecone<App>ApiKey``), checked to differ from
    each other and from Pulumi's key; each stays a secret."""
    names = ["pineconeApiKey", *[f"pinecone{app.capitalize()}ApiKey" for app in app_keys]]
    checked = pulumi.Output.all(admin_key, *app_keys.values()).apply(require_distinct_keys(names))
    return {app: pulumi.Output.secret(checked.apply(lambda values, i=i: values[i + 1]))
            for i, app in enumerate(app_keys)}


def managed_app_keys(prefix: str, *, project_id: str, client_id: str, client_secret: pulumi.Input[str],
                     roles: Mapping[str, Sequence[str]] = APP_KEY_ROLES,
                     parent: pulumi.Resource | None = None) -> dict[str, pulumi.Output[str]]:
    """Create one API key per app in the Pinecone project, with the app's roles.

    Creating keys is an Admin API call, which takes a service account's client ID and
    secret (an API key cannot manage keys). Each key is named ``<prefix>-<app>``.
    Raises ValueError on an empty project or client ID."""
    if not project_id or not client_id:
        raise ValueError("pineconeProjectId and pineconeClientId are both needed to create the apps' keys")
    provider = pinecone.Provider(f"{prefix}-pinecone-admin", client_id=client_id, client_secret=client_secret,
                                 opts=pulumi.ResourceOptions(parent=parent))
    keys = {}
    for app, app_roles in roles.items():
        key_name = f"{prefix}-{app}"
        if len(key_name) > MAX_KEY_NAME:
            raise ValueError(f"Pinecone API key name {key_name!r} is longer than {MAX_KEY_NAME} characters")
        key = pinecone.ApiKey(f"{prefix}-pinecone-{app}", name=key_name, project_id=project_id,
                              roles=list(app_roles),
                              opts=pulumi.ResourceOptions(parent=parent, provider=provider))
        keys[app] = pulumi.Output.secret(key.key)
    return keys
