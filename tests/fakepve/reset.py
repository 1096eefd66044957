"""POST /reset on the control API: the cluster back to its templates.

For tests that run many trials on one fakepve (agent/tests/crash.rs kills the agent at a
different point of an apply each time): waiting for the tasks a killed client left
running, then removing every guest that is not a template, with its volumes, pool
memberships and firewall, and zeroing the request counters. Starting a new harness per
trial would cost a second or more each.
"""

import asyncio
import re

from aiohttp import web

from fakepve.qemu import drives_of, split_drive


async def reset(pve, deadline=30.0):
    """Wait (up to deadline real seconds) for running tasks, then drop every non-template guest."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while any(t.get('status') == 'running' for t in pve.tasks.values()):
        if loop.time() > end:
            raise TimeoutError('tasks still running after {0}s'.format(deadline))
        await asyncio.sleep(0.01)
    removed = []
    for vm in [v for v in pve.vms if not v.template]:
        volumes = [volume for _key, volume, _props in drives_of(vm.config)]
        volumes += [split_drive(vm.config[k])[0] for k in vm.config if re.fullmatch(r'unused\d+', k)]
        for volume in volumes:
            try:
                pve._qm_free(volume)
            except Exception:  # a volume the config names but the storage never had
                pass
        pve.vms.remove(vm)
        pve._pool_leave(vm.vmid)
        pve._fw()['guests'].pop(vm.vmid, None)
        removed.append(vm.vmid)
    pve.failures.clear()
    pve.reset_counters()
    return removed


def add_routes(routes, pve):
    @routes.post('/reset')
    async def reset_route(request):
        try:
            removed = await reset(pve)
        except TimeoutError as e:
            return web.json_response({'error': str(e)}, status=409)
        return web.json_response({'removed': sorted(removed)})
