"""api/routing.py's SegmentRouter: it tries only the routes a path's shape can match, and must choose,
for every path, the route (and the kind of match) that Starlette's Router would, trying every route."""

from __future__ import annotations

import itertools
from typing import Any

from starlette.routing import BaseRoute, Match, Route, Router

from canopy_svc.api import routing

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _scope(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "query_string": b"", "headers": []}


def _choice(routes: list[BaseRoute], method: str, path: str) -> tuple[BaseRoute | None, Match]:
    """Starlette's rule: the first full match, else the first partial one (a 405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(_scope(method, path))
        if match is Match.FULL:
            return route, Match.FULL
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial, (Match.NONE if partial is None else Match.PARTIAL)


def _sample_paths(routes: list[BaseRoute]) -> set[str]:
    """Every route's path with ids filled in, and the shapes around it that must not match it: an id
    that is a literal segment of another route, a trailing slash, one segment more or fewer, a first
    segment that no route has, an encoded separator kept in an id."""
    paths = {
        "/",
        "",
        "//",
        "/nothing-here",
        "/customers//accounts",
        "/%2F",
        "/customers/a%2Fb",
        "/customers/a%2Fb/accounts",
    }
    literals = {segment for route in routes if isinstance(route, Route) for segment in route.path.split("/")}
    fillers = ["x1", "accounts", "customers", "cards", *sorted(s for s in literals if s and "{" not in s)[:8]]
    for route in routes:
        assert isinstance(route, Route)
        template = route.path
        holes = template.count("{")
        for values in itertools.islice(itertools.product(fillers, repeat=holes), 40):
            path = template
            for value in values:
                start, end = path.index("{"), path.index("}")
                path = path[:start] + value + path[end + 1 :]
            paths.update({path, path + "/", path + "/extra", path.rsplit("/", 1)[0], "/zz" + path})
    return paths


def test_the_segment_router_chooses_what_starlettes_router_chooses(app: Any) -> None:
    router = app.router
    assert isinstance(router, routing.SegmentRouter)
    routes = list(router.routes)
    assert len(routes) > 20  # the served routes, documentation and metrics included
    plain = Router(routes)
    paths = _sample_paths(routes)
    assert len(paths) > 500
    checked = 0
    for path, method in itertools.product(sorted(paths), _METHODS):
        expected = _choice(list(plain.routes), method, path)
        fast = _choice(router.candidates(path), method, path)
        # A path the candidates miss goes on to Starlette's whole scan; one they match must be its choice.
        if fast[1] is not Match.NONE:
            assert fast == expected, (method, path)
            checked += 1
        else:
            assert expected[1] is Match.NONE, (method, path, expected)
    assert checked > 200


def test_a_route_of_another_shape_is_tried_for_every_path() -> None:
    async def endpoint(request: Any) -> Any:
        raise AssertionError("not called")

    anywhere = Route("/files/{rest:path}", endpoint)
    literal = Route("/files/{name:id}", endpoint)
    router = routing.SegmentRouter([literal, anywhere])
    assert router.candidates("/files/a/b/c") == [anywhere]
    assert router.candidates("/files/a") == [literal, anywhere]
    assert router.candidates("/other") == [anywhere]
