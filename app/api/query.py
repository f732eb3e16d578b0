"""Query parameters a route does not take are refused (422 ``unknown_parameter``), not
ignored: ``GET /v1/jobs?dataset_id=…`` used to answer every job as if filtered."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.api.deps import CurrentTenant
from app.api.errors import ApiError


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


_TAKEN: dict[int, frozenset[str]] = {}  # id(route) -> names; routes live as long as the app


def _taken(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` declares, its dependencies' included."""
    names = _TAKEN.get(id(route))
    if names is None:
        names = _TAKEN[id(route)] = frozenset(_query_names(route.dependant))
    return names


async def known_query_parameters(request: Request, _: CurrentTenant) -> None:
    # after the API key (a request without one is a 401 first, whatever its parameters)
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    taken = _taken(route)
    for name in request.query_params:
        if name not in taken:
            hint = f"it takes {', '.join(sorted(taken))}" if taken else "it takes none"
            raise ApiError(422, "unknown_parameter", f"unknown query parameter "
                           f"{name[:100]!r} for {request.method} {route.path}; {hint}",
                           field=name[:100])
