"""Requests that hang until released: a fault fakepve's catalogue does not have.

`flaky_network(hang_rate=...)` hangs a random share of requests for a while; tests of a
stuck agent (the systemd watchdog) need one chosen request to hang for as long as the
test wants. Control routes (added to the harness's control API):

    POST /hang {"method": "GET", "path": "/cluster/resources"}
        requests matching it (a path suffix or a schema template, as for /fail) from now
        on wait before they are answered;
    POST /hang/release {}
        forgets the rules and lets every waiting request go on (answered as usual);
    GET  /hang
        {"rules": [[method, path], ...], "hung": n}: n requests are waiting now.

A client that gives up on a hung request (its timeout) just closes the connection.
"""

import asyncio

from aiohttp import web


class HangMixin:
    """A FakePve mixin: put it before FakePve in the bases."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.hang_rules = []
        self.hung = 0
        self._hang_release = asyncio.Event()

    def hang(self, method, path):
        self.hang_rules.append((method.upper(), path))

    def release_hangs(self):
        self.hang_rules = []
        self._hang_release.set()
        self._hang_release = asyncio.Event()

    async def _answer(self, request, handler, generic, path_node):
        if any(method == request.method and self._failure_matches(request, generic, path)
               for method, path in self.hang_rules):
            release = self._hang_release
            self.hung += 1
            try:
                await release.wait()
            finally:
                self.hung -= 1
        return await super()._answer(request, handler, generic, path_node)


def add_hang_routes(routes, pve):
    """The /hang control routes, on the harness's RouteTableDef."""

    @routes.post('/hang')
    async def hang(request):
        b = await request.json()
        if not isinstance(b, dict) or 'method' not in b or 'path' not in b:
            return web.json_response({'error': 'give "method" and "path"'}, status=400)
        pve.hang(b['method'], b['path'])
        return web.json_response({'rules': pve.hang_rules})

    @routes.post('/hang/release')
    async def hang_release(request):
        pve.release_hangs()
        return web.json_response({})

    @routes.get('/hang')
    async def hang_state(request):
        return web.json_response({'rules': pve.hang_rules, 'hung': pve.hung})
