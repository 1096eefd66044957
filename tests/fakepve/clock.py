"""Node clocks for `pve-gitops doctor`'s clock check.

fakepve 0.5 answers GET /nodes/{node}/time from the schema with a fixed sample time.
This mixin answers with the real time plus a per-node skew that tests set through the
control route POST /clock {"node": "pve2", "skew": 300} (seconds; 0 puts it back), as
PVE answers with each node's own clock (the request is proxied to that node).
"""

import time

from aiohttp import web


class NodeClock(object):
    """Mixin for FakePve: GET /nodes/{node}/time from a clock that can be skewed per node."""

    clock_skew = {}

    def _routes_clock(self):
        return [('GET', '/nodes/{node}/time', self._node_time)]

    async def _node_time(self, v, user):
        now = int(time.time() + self.clock_skew.get(v['node'], 0))
        return {'time': now, 'localtime': now, 'timezone': 'UTC'}


def control_routes(pve, routes):
    @routes.post('/clock')
    async def clock(request):
        b = await request.json()
        pve.clock_skew = dict(pve.clock_skew, **{b['node']: float(b.get('skew', 0))})
        return web.json_response(pve.clock_skew)
