"""GET /nodes/{node}/tasks as PVE lists a node's tasks.

fakepve 0.5 validates the list's parameters but only filters by `vmid` and pages by
`start`/`limit`, newest start first, and shows a running task without a `status`.
PVE (PVE/API2/Tasks.pm) lists the active tasks first, `status: RUNNING` while they
run, then the archive of ended ones, newest first, and honours `source` (`archive`,
the default; `active`; `all`), `since`/`until` (on the start time), `typefilter` and
`userfilter`. pve-gitops reads the list with `source=all&since=…` to look at all the
tasks it waits for on a node at once; those filters are served here. (`errors` and
`statusfilter` stay ignored.)

PVE's list shows a task as running until the daemon that started it has reaped its
worker; the control route POST /tasklist {"stale": true} makes every task listed here
show as running (false: as they are), for tests of a client that must not wait on such
a list forever.
"""

from aiohttp import web

from fakepve.server import USER, ok, params


class TaskList(object):
    """Mixin for FakePve: the node task list's order and filters as PVE has them."""

    tasklist_stale = False

    async def _task_list(self, request):
        node = request.match_info['node']
        user = request[USER]
        p = self._verify(request, await params(request))
        source = p.get('source', 'archive')
        audit = self.allowed(user, '/nodes/' + node, 'Sys.Audit')

        def wanted(t):
            if t['node'] != node or not (audit or self._task_owner(user, t)):
                return False
            if p.get('vmid') is not None and t['id'] != str(p['vmid']):
                return False
            if p.get('typefilter') and t['type'] != p['typefilter']:
                return False
            if p.get('userfilter') and p['userfilter'].lower() not in t['user'].lower():
                return False
            if p.get('since') is not None and t['starttime'] < p['since']:
                return False
            if p.get('until') is not None and t['starttime'] > p['until']:
                return False
            return True

        def running(t):
            return t['status'] == 'running' or self.tasklist_stale

        listed = []
        if source in ('active', 'all'):
            active = [t for t in self.tasklog if running(t) and wanted(t)]
            for t in sorted(active, key=lambda t: -t['starttime']):
                view = self._task_view(t, True)
                view['status'] = 'RUNNING'
                view.pop('endtime', None)
                listed.append(view)
        if source != 'active':
            archive = [t for t in self.tasklog if not running(t) and wanted(t)]
            listed.extend(self._task_view(t, True) for t in sorted(archive, key=lambda t: -t['endtime']))
        start = p.get('start', 0)
        return ok(listed[start:start + p.get('limit', 50)])


def control_routes(pve, routes):
    @routes.post('/tasklist')
    async def tasklist(request):
        b = await request.json()
        pve.tasklist_stale = bool(b.get('stale', False))
        return web.json_response({'stale': pve.tasklist_stale})
