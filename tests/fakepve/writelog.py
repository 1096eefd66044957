"""Who wrote what, when: the log the chaos soak (agent/tests/chaos.rs) checks.

fakepve's own request list is bounded and says nothing of the sender. The soak runs one
agent per node, each with its own API token, and asks afterwards which agent sent every
write and when it arrived, to check that no two agents acted as leader at once; and
what every deleted VM looked like just before its DELETE, to check the prune rules.

Every request that is not a GET or HEAD is logged as it arrives (before any injected
fault or hang), with:

    {"seq": n, "t_ns": CLOCK_MONOTONIC nanoseconds (the clock the agents' apply log and
     the pmxcfs emulation use), "method", "path", "user": "root@pam!pve1" or null
     (unauthenticated), "body": the form body as text, secrets redacted by fakepve,
     "vm": for DELETE /nodes/{node}/qemu/{vmid}: {"name", "node", "config"} of the VM
     then, or null}

Control routes (added to the harness's control API):

    GET  /writes?since=n   the entries from seq n on
    POST /tokens {"id": "root@pam!pve1"}   a new API token; answers {"id", "secret"}
"""

import re
import secrets
import time
import uuid

from aiohttp import web

from fakepve.server import USER

QEMU_VM = re.compile(r'^/api2/json/nodes/[^/]+/qemu/(\d+)/?$')


class WriteLogMixin:
    """A FakePve mixin: put it before FakePve in the bases."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.write_log = []

    def _record(self, request, body):
        super()._record(request, body)
        if request.method in ('GET', 'HEAD'):
            return
        entry = {'seq': len(self.write_log), 't_ns': time.monotonic_ns(), 'method': request.method,
                 'path': request.path, 'user': request.get(USER),
                 'body': self.requests[-1][2].decode('utf-8', 'replace') if self.requests else ''}
        found = QEMU_VM.match(request.path)
        if request.method == 'DELETE' and found:
            vm = self.vm(int(found.group(1)))
            entry['vm'] = None if vm is None else {'name': vm.name, 'node': vm.node, 'config': dict(vm.config)}
        self.write_log.append(entry)


def add_routes(routes, pve):
    @routes.get('/writes')
    async def writes(request):
        since = int(request.query.get('since', 0))
        return web.json_response(pve.write_log[since:])

    @routes.post('/tokens')
    async def tokens(request):
        b = await request.json()
        tid = b.get('id') if isinstance(b, dict) else None
        if not tid or '!' not in tid:
            return web.json_response({'error': 'give "id": "user@realm!name"'}, status=400)
        secret = str(uuid.UUID(bytes=secrets.token_bytes(16)))
        pve.apitokens[tid] = secret
        return web.json_response({'id': tid, 'secret': secret})
