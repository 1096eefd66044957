#!/usr/bin/env python3
"""A multi-node fakepve for pve-gitops tests, with a control endpoint.

Started by the Rust test support (agent/tests/support/fakepve.rs) with the
venv that tests/fakepve/setup-venv.sh makes. It serves:

* the fake PVE API over HTTPS on 127.0.0.1 (a free port), with a self-signed
  certificate and the API token root@pam!test;
* a control API over plain HTTP on another loopback port, so tests can count
  requests, inject faults, change the cluster and inspect its state between
  steps (see CONTROL_ROUTES below).

When both listen it prints ONE JSON line on stdout:

    {"api_port": .., "control_port": .., "ca_file": "..", "other_ca_file": "..",
     "fingerprint": "AB:CD:..", "token_id": "root@pam!test", "token_secret": ".."}

and runs until its standard input closes (the test process died or dropped
it), SIGTERM or SIGINT. `other_ca_file` is an unrelated self-signed
certificate, for tests that check a wrong CA is refused.
"""

import argparse
import asyncio
import collections
import copy
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import uuid

from aiohttp import web

import access
import clock

from fakepve import FakePve, PveError
from fakepve.certs import make_cert
from fakepve.lxc import format_size
from fakepve.qemu import is_cdrom, join_drive, split_drive, volume_ref
from fakepve.routing import check_digest, param_error
from fakepve.server import API
from sdn import SdnApi, sdn_control

import images
from hang import HangMixin, add_hang_routes

import reset
import tasklist
import wire
import writelog

wire.use_pve_json()

TOKEN_ID = 'root@pam!test'
# VM attributes the control API may set (FakeVm fields, see fakepve/model.py).
VM_ATTRS = ('status', 'qmpstatus', 'start_error', 'start_secs', 'shutdown_secs', 'stop_secs', 'acpi',
            'agent_hangs', 'ha_state', 'stats')
DRIVE = re.compile(r'^(ide|sata|scsi|virtio|efidisk|tpmstate)\d+$')
SIZE = re.compile(r'(?:^|,)size=(\d+(?:\.\d+)?)([KMGT]?)(?:,|$)')
UNITS = {'': 1, 'K': 1024, 'M': 1024 ** 2, 'G': 1024 ** 3, 'T': 1024 ** 4}
# Storage types every node sees (pve-storage marks them shared by type).
SHARED_TYPES = ('rbd', 'cephfs', 'nfs', 'cifs', 'glusterfs', 'iscsi', 'iscsidirect', 'pbs')


class CountingPve(writelog.WriteLogMixin, HangMixin, tasklist.TaskList, SdnApi, images.ImagesMixin, access.AccessState, clock.NodeClock, FakePve):
    """FakePve that counts every request it records, per schema endpoint and per concrete path."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # datacenter.cfg's settings (GET /cluster/options), e.g. max_workers.
        self.datacenter_cfg = {}
        self.reset_counters()

    def reset_counters(self):
        # Tasks of each type running now, and the most that ran at once since the reset.
        self.running_tasks = getattr(self, 'running_tasks', collections.Counter())
        self.peak_tasks = collections.Counter()
        self.by_endpoint = collections.Counter()
        self.by_path = collections.Counter()
        self.reads = 0
        self.writes = 0

    def _record(self, request, body):
        # FakePve's middleware calls this once per request, authenticated or not, before any fault or handler.
        super()._record(request, body)
        match = self.resolve(request, API)
        template = match.template if match else request.path
        self.by_endpoint['{0} {1}'.format(request.method, template)] += 1
        self.by_path['{0} {1}'.format(request.method, request.path)] += 1
        if request.method in ('GET', 'HEAD'):
            self.reads += 1
        else:
            self.writes += 1

    def counters(self):
        return {'total': self.reads + self.writes, 'reads': self.reads, 'writes': self.writes,
                'by_endpoint': dict(self.by_endpoint), 'by_path': dict(self.by_path),
                'peak_tasks': dict(self.peak_tasks)}

    async def task(self, node, ttype, tid, user, body, **kwargs):
        # Counts concurrent tasks per type, so tests can check how many clones ran at once.
        async def counted():
            self.running_tasks[ttype] += 1
            self.peak_tasks[ttype] = max(self.peak_tasks[ttype], self.running_tasks[ttype])
            try:
                return await body()
            finally:
                self.running_tasks[ttype] -= 1
        return await super().task(node, ttype, tid, user, counted, **kwargs)

    # ------------------------------------------------------------ qemu resize

    # fakepve 0.5 answers PUT .../qemu/{vmid}/resize from the schema only; this keeps state, as
    # qemu-server's resize_vm does: one disk grows (never shrinks), in a task (PVE 8+).
    def _routes_harness(self):
        return [('PUT', '/nodes/{node}/qemu/{vmid}/resize', self._harness_qm_resize),
                ('POST', '/nodes/{node}/qemu/{vmid}/migrate', self._harness_qm_migrate),
                ('GET', '/cluster/options', self._harness_dc_options)]

    # ------------------------------------------------------------ datacenter options

    # fakepve 0.5 answers GET /cluster/options from the schema only; this gives the keys of
    # datacenter.cfg that are set, as pve-manager's API2/Cluster.pm does (the control API's
    # /datacenter sets them).
    async def _harness_dc_options(self, v, user):
        return dict(self.datacenter_cfg)

    # ------------------------------------------------------------ local storage and nodes

    def _local_volumes(self, config):
        """The disk volumes of a config that live on storage only one node sees."""
        out = []
        for key, value in config.items():
            if not DRIVE.match(key):
                continue
            volume, props = split_drive(value)
            sid = volume_ref(volume)[0]
            if sid is None or is_cdrom(volume, props):
                continue
            store = self.storages.get(sid, {})
            if not (store.get('shared') or store.get('type') in SHARED_TYPES):
                out.append(volume)
        return out

    # qemu-server's clone_vm refuses a clone to another node when a source disk is on local storage
    # ("can't clone VM to node ... (VM uses local storage)"); fakepve 0.5 does not check it.
    async def _qm_clone(self, v, user):
        target, storage = v.get('target'), v.get('storage')
        if target and target not in (v['node'], 'localhost'):
            src = self.find(v['node'], v['vmid'])
            store = self.storages.get(storage, {}) if storage else None
            shared_target = store is not None and (store.get('shared') or store.get('type') in SHARED_TYPES)
            if not shared_target and self._local_volumes(src.config):
                raise PveError(500, "can't clone VM to node '{0}' (VM uses local storage)".format(target))
        return await super()._qm_clone(v, user)

    # fakepve 0.5 answers POST .../migrate from the schema only; this keeps state for offline
    # migration as qemu-server does: a stopped VM moves with its local disks, in a task.
    async def _harness_qm_migrate(self, v, user):
        vm = self.find(v['node'], v['vmid'])
        self.need_quorum()
        target = v['target']
        if target not in self.nodes:
            raise PveError(500, "no such cluster node '{0}'".format(target))
        if target == vm.node:
            raise PveError(500, 'target is local node.')
        if vm.status == 'running' and not v.get('online'):
            raise PveError(500, "can't migrate running VM without --online")
        if vm.template and self._local_volumes(vm.config):
            raise PveError(500, "can't migrate VM which uses local devices: template with local disks")
        self._check_lock(vm)

        async def body():
            self._qm_lock(vm, 'migrate')
            try:
                await self.pause(1)
                vm.node = target
            finally:
                self._qm_lock(vm, None)
        return await self.task(vm.node, 'qmigrate', vm.vmid, user, body, vm=vm)

    async def _harness_qm_resize(self, v, user):
        vm = self.find(v['node'], v['vmid'])
        self.need_quorum()
        check_digest(vm.digest(), v.get('digest'))
        self._check_lock(vm)
        disk = v['disk']
        if disk not in vm.config:
            raise PveError(500, "disk '{0}' does not exist".format(disk))
        volume, props = split_drive(vm.config[disk])
        if is_cdrom(volume, props):
            raise PveError(500, "you can't resize a cdrom")
        found = re.fullmatch(r'(\+)?(\d+(?:\.\d+)?)([KMGT])?', str(v['size']))
        if not found:
            raise param_error(size="value does not match the regex pattern")
        current = SIZE.search(',' + ','.join('{0}={1}'.format(k, x) for k, x in props.items()))
        current = int(float(current.group(1)) * UNITS[current.group(2)]) if current else 0
        amount = int(float(found.group(2)) * UNITS[found.group(3) or ''])
        new = current + amount if found.group(1) else amount
        if new < current:
            raise PveError(500, 'shrinking disks is not supported')

        async def body():
            props['size'] = format_size(new)
            vm.config[disk] = join_drive(volume, props)
            sid, name = volume_ref(volume)
            vol = self.storages.get(sid, {}).get('volumes', {}).get(name) if sid else None
            if vol is not None:
                vol['size'] = new
        return await self.task(vm.node, 'resize', vm.vmid, user, body, vm=vm)

    # ------------------------------------------------------------ qemu pending

    # qemu-server's GET .../qemu/{vmid}/pending lists every scalar key of the parsed config
    # file, and parse_vm_config puts the file's `digest` among them
    # (PVE::GuestHelpers::config_with_pending_array over load_config); fakepve 0.5 leaves it
    # out. The agent observes a VM with this one call, digest included.
    async def _pending(self, request):
        vm = self._vm(request, 'VM.Audit')
        response = await super()._pending(request)
        body = json.loads(response.body)
        body['data'].append({'key': 'digest', 'value': vm.digest()})
        return web.json_response(body)

    # ------------------------------------------------------------ guest agents

    # fakepve gives VMs made through the API no guest agent (every agent call answers 'not
    # running'). A VM cloned from a cloud image with qemu-guest-agent installed answers once
    # it runs with `agent` enabled: tests set what such VMs answer (a dict as the control
    # API's "agent" field takes, e.g. {} for fakepve's defaults) with POST /guest_agents.
    new_vm_agent = None

    async def _agent_call(self, match, values):
        vm = self.find(values['node'], values['vmid'])
        if vm.agent is None and self.new_vm_agent is not None and agent_enabled(vm.config.get('agent')):
            vm.agent = copy.deepcopy(self.new_vm_agent)
        return await super()._agent_call(match, values)

    # ------------------------------------------------------------ capacity

    # fakepve 0.5 gives every online node 4 CPUs and 8 GiB (2 GiB used), and lists every
    # storage in /cluster/resources as 100 GiB with nothing used. POST /capacity sizes the
    # nodes (all alike), and storages report what their volumes use of their `total`, as
    # the storage status endpoint already does.
    node_capacity = {}

    def _node_stats(self, online):
        stats = FakePve._node_stats(online)
        if stats:
            stats.update(self.node_capacity)
        return stats

    def _storage_resource(self, node, name):
        item = super()._storage_resource(node, name)
        if item:
            item['maxdisk'], item['disk'], _ = self._space(self.storages[name])
        return item

    # ------------------------------------------------------------ state

    def register_volumes(self, vm):
        """Put the volumes a config names (`local-lvm:vm-100-disk-0,size=2G`) into the storage state,
        so clones copy their size and destroy frees them, as for VMs fakepve made itself."""
        for key, value in vm.config.items():
            if not DRIVE.match(key):
                continue
            text = str(value)
            volume = text.split(',')[0]
            sid, _, name = volume.partition(':')
            if not name or sid not in self.storages or 'media=cdrom' in text:
                continue
            found = SIZE.search(text)
            size = int(float(found.group(1)) * UNITS[found.group(2)]) if found else 0
            fmt = name.rsplit('.', 1)[1] if '.' in name else 'raw'
            self.storages[sid].setdefault('volumes', {}).setdefault(name, {
                'content': 'images', 'format': fmt, 'size': size, 'vmid': vm.vmid, 'ctime': 0})

    @staticmethod
    def guest_view(vm):
        return {'vmid': vm.vmid, 'name': vm.name, 'node': vm.node, 'status': vm.status,
                'template': bool(vm.template), 'lock': vm.lock, 'pool': vm.pool,
                'config': dict(vm.config), 'pending': dict(vm.pending), 'digest': vm.digest(),
                'agent_requests': [[cmd, args] for cmd, args in vm.agent_requests]}

    def state(self):
        cts = getattr(self, 'cts', [])
        return {
            'quorate': self.quorate,
            'nodes': dict((name, {'online': s.get('online', True)}) for name, s in sorted(self.nodes.items())),
            'guests': [self.guest_view(vm) for vm in sorted(self.vms, key=lambda v: v.vmid)],
            'containers': [{'vmid': ct.vmid, 'node': ct.node, 'status': ct.status} for ct in cts],
            'pools': dict((name, sorted(ids)) for name, ids in self.pools.items()),
            'tasks': [dict((k, v) for k, v in t.items() if k != 'log') for t in self.tasklog],
        }


def agent_enabled(value):
    """Whether a config's `agent` value (`1`, `0`, `enabled=1,fstrim_cloned_disks=1`) enables it."""
    if value is None:
        return False
    first = str(value).split(',')[0]
    return first.partition('=')[2] == '1' if first.startswith('enabled=') else first == '1'


def json_error(status, message):
    return web.json_response({'error': message}, status=status)


async def body_of(request):
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='body is not JSON')
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text='body is not a JSON object')
    return data


def control_app(pve):
    """The control API. Every answer is JSON; errors are {"error": "..."} with status 400 or 404."""
    routes = web.RouteTableDef()
    sdn_control(routes, pve)

    @routes.get('/counters')
    async def counters(request):
        return web.json_response(pve.counters())

    @routes.post('/counters/reset')
    async def counters_reset(request):
        pve.reset_counters()
        return web.json_response({})

    @routes.post('/fail')
    async def fail(request):
        # {"method": "PUT", "path": "/nodes/pve1/qemu/100/config" or "/nodes/{node}/qemu/{vmid}/config",
        #  "status": 500, "message": "...", or "error": "config_lock_timeout"; "times": 1, "html": false}
        b = await body_of(request)
        try:
            pve.fail(b['method'], b['path'], status=b.get('status'), message=b.get('message'),
                     html=bool(b.get('html')), error=b.get('error'), times=b.get('times'))
        except (KeyError, TypeError, ValueError) as e:
            return json_error(400, '{0}: {1}'.format(type(e).__name__, e))
        return web.json_response({})

    @routes.post('/fail/clear')
    async def fail_clear(request):
        pve.failures.clear()
        return web.json_response({})

    @routes.get('/errors')
    async def errors(request):
        # The catalogue names /fail accepts for a method and path.
        return web.json_response(pve.errors_for(request.query['method'], request.query['path']))

    @routes.post('/quorum')
    async def quorum(request):
        b = await body_of(request)
        if b.get('quorate', True):
            pve.regain_quorum()
        else:
            pve.lose_quorum()
        return web.json_response({'quorate': pve.quorate})

    @routes.post('/nodes/{node}')
    async def node(request):
        # {"online": false} takes the node offline (595 for its requests); a new name adds a node.
        b = await body_of(request)
        name = request.match_info['node']
        if name not in pve.nodes:
            pve.add_node(name)
        pve.set_node_offline(name, not b.get('online', True))
        return web.json_response({'node': name, 'online': pve.nodes[name]['online']})

    @routes.post('/network')
    async def network(request):
        # {"drop_rate", "hang_rate", "hang_secs", "seed"} and/or {"latency", "jitter"} (PVE seconds).
        b = await body_of(request)
        if 'latency' in b or 'jitter' in b:
            pve.slow_network(b.get('latency', 0.0), b.get('jitter', 0.0))
        flaky = dict((k, b[k]) for k in ('drop_rate', 'hang_rate', 'hang_secs', 'seed') if k in b)
        if flaky:
            pve.flaky_network(**flaky)
        return web.json_response(dict(pve.network))

    @routes.post('/ceph')
    async def ceph(request):
        # {"add_storage": "ceph-pool"} adds an RBD storage (shared); {"slow": secs} makes every RBD-backed
        # clone/create/start take secs PVE seconds longer; {"down": true}; {"recover": true}.
        b = await body_of(request)
        if b.get('add_storage'):
            pve.add_ceph_storage(b['add_storage'], b.get('pool', 'rbd'))
        if 'slow' in b:
            pve.ceph_slow(float(b['slow']))
        if b.get('down'):
            pve.ceph_down()
        if b.get('recover'):
            pve.ceph_recover()
        return web.json_response(dict(pve.ceph, storages=sorted(pve.ceph_storages())))

    @routes.post('/guest_agents')
    async def guest_agents(request):
        # {"agent": {...}}: what the agent of VMs made through the API answers once they run with
        # `agent` enabled ({} for fakepve's defaults; "exec" maps commands to results); null: no agent.
        b = await body_of(request)
        pve.new_vm_agent = None if b.get('agent') is None else dict(b['agent'])
        return web.json_response({'agent': pve.new_vm_agent})

    @routes.post('/capacity')
    async def capacity(request):
        # {"nodes": {"maxmem": bytes, "mem": bytes, "maxcpu": n}} sizes every node;
        # {"storages": {"rbd": bytes}} sets a storage's total size.
        b = await body_of(request)
        nodes = dict((k, int(v)) for k, v in (b.get('nodes') or {}).items() if k in ('maxmem', 'mem', 'maxcpu'))
        pve.node_capacity = dict(pve.node_capacity, **nodes)
        for sid, total in (b.get('storages') or {}).items():
            if sid not in pve.storages:
                return json_error(404, 'no storage {0}'.format(sid))
            pve.storages[sid]['total'] = int(total)
            pve.storages[sid].pop('avail', None)
        return web.json_response({'nodes': pve.node_capacity})

    @routes.post('/datacenter')
    async def datacenter(request):
        # {"max_workers": 1}: datacenter.cfg as an administrator left it ({}: nothing set).
        pve.datacenter_cfg = dict(await body_of(request))
        return web.json_response(pve.datacenter_cfg)

    @routes.post('/time_scale')
    async def time_scale(request):
        pve.time_scale = float((await body_of(request))['value'])
        return web.json_response({'time_scale': pve.time_scale})

    @routes.post('/vms')
    async def vm_create(request):
        # {"vmid": 9000, "name": "tmpl", "node": "pve1", "template": true, "config": {...}, "status": "stopped",
        #  "lock": null, "pool": null, "agent": {} (a running guest agent), "start_error": ...}
        b = await body_of(request)
        try:
            vmid = int(b['vmid'])
        except (KeyError, TypeError, ValueError):
            return json_error(400, 'vmid (an integer) is required')
        if pve.vm(vmid) is not None:
            return json_error(400, 'VM {0} exists'.format(vmid))
        config = dict(b.get('config') or {})
        if b.get('template'):
            config['template'] = 1
        if b.get('lock'):
            config['lock'] = b['lock']
        if b.get('pool') and b['pool'] not in pve.pools:
            pve.pools[b['pool']] = set()
            pve.pool_info.setdefault(b['pool'], {'comment': None, 'storage': set()})
        vm = pve.add_vm(vmid, b.get('name') or config.get('name') or 'vm{0}'.format(vmid),
                        node=b.get('node', 'pve1'), status=b.get('status', 'stopped'), config=config,
                        template=bool(b.get('template')), lock=b.get('lock'), pool=b.get('pool'))
        if 'agent' in b:
            vm.agent = None if b['agent'] is None else dict(b['agent'])
        for key in VM_ATTRS:
            if key in b and key != 'status':
                setattr(vm, key, b[key])
        pve.register_volumes(vm)
        return web.json_response(pve.guest_view(vm))

    @routes.post('/cts')
    async def ct_create(request):
        # {"vmid": 200, "name": "dns", "node": "pve1", "status": "running",
        #  "config": {"net0": "name=eth0,bridge=vmbr0,ip=192.0.2.53/24"}}: a container (fakepve fills in the rest).
        b = await body_of(request)
        try:
            ct = pve.add_ct(int(b['vmid']), b.get('name'), node=b.get('node', 'pve1'),
                            status=b.get('status', 'stopped'), config=b.get('config'))
        except (KeyError, TypeError, ValueError) as e:
            return json_error(400, '{0}: {1}'.format(type(e).__name__, e))
        return web.json_response({'vmid': ct.vmid, 'node': ct.node, 'status': ct.status, 'config': dict(ct.config)})

    @routes.patch('/vms/{vmid}')
    async def vm_update(request):
        # Any of VM_ATTRS, "lock" (null clears it), "agent", "config" (merged; null values delete keys).
        vm = pve.vm(int(request.match_info['vmid']))
        if vm is None:
            return json_error(404, 'no VM {0}'.format(request.match_info['vmid']))
        b = await body_of(request)
        for key in VM_ATTRS:
            if key in b:
                setattr(vm, key, b[key])
        if 'lock' in b:
            if b['lock']:
                pve.snapshot_lock(vm.vmid, b['lock'])
            else:
                pve.unlock(vm.vmid)
        if 'agent' in b:
            vm.agent = None if b['agent'] is None else dict(b['agent'])
        for key, value in (b.get('config') or {}).items():
            if value is None:
                vm.config.pop(key, None)
            else:
                vm.config[key] = value
        return web.json_response(pve.guest_view(vm))

    @routes.post('/vms/{vmid}/config_lock')
    async def vm_config_lock(request):
        # {"secs": 5}: another task holds the VM's config lock for 5 PVE seconds; {"release": true} ends it.
        vmid = int(request.match_info['vmid'])
        if pve.vm(vmid) is None:
            return json_error(404, 'no VM {0}'.format(vmid))
        b = await body_of(request)
        if b.get('release'):
            pve.release_config_lock(vmid)
        else:
            await pve.hold_config_lock(vmid, b.get('secs'))
        return web.json_response({})

    @routes.get('/vms/{vmid}')
    async def vm_get(request):
        vm = pve.vm(int(request.match_info['vmid']))
        if vm is None:
            return json_error(404, 'no VM {0}'.format(request.match_info['vmid']))
        return web.json_response(pve.guest_view(vm))

    @routes.get('/requests')
    async def requests(request):
        # The last ?limit= (default 50) requests as [method, path, body text], secrets redacted by fakepve.
        limit = int(request.query.get('limit', 50))
        return web.json_response([[m, p, b.decode('utf-8', 'replace')] for m, p, b in pve.requests[-limit:]])

    @routes.get('/state')
    async def state(request):
        return web.json_response(pve.state())

    @routes.get('/tasks/{upid}')
    async def task(request):
        record = pve.tasks.get(request.match_info['upid'])
        if record is None:
            return json_error(404, 'no task')
        return web.json_response(record)

    images.control_routes(routes, pve)
    access.control_routes(pve, routes)
    clock.control_routes(pve, routes)
    tasklist.control_routes(pve, routes)
    add_hang_routes(routes, pve)
    reset.add_routes(routes, pve)
    writelog.add_routes(routes, pve)
    app = web.Application()
    app.add_routes(routes)
    return app


def fingerprint(der):
    digest = hashlib.sha256(der).hexdigest().upper()
    return ':'.join(digest[i:i + 2] for i in range(0, len(digest), 2))


def watch_stdin(loop, stop):
    """Stop when stdin reaches EOF: the test process that started us has gone or let go."""
    def run():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        loop.call_soon_threadsafe(stop.set)
    threading.Thread(target=run, name='stdin-watch', daemon=True).start()


async def main(args):
    workdir = args.workdir or tempfile.mkdtemp(prefix='fakepve-harness-')
    owned = args.workdir is None
    os.makedirs(workdir, exist_ok=True)
    try:
        certfile, keyfile, der = make_cert(workdir, name='fakepve', hosts=('127.0.0.1',))
        other_ca, _, _ = make_cert(workdir, name='other-ca', hosts=('127.0.0.1',))
        secret = args.token_secret or str(uuid.UUID(bytes=secrets.token_bytes(16)))
        pve = CountingPve(user='root@pam', password=secrets.token_hex(16), host='127.0.0.1', port=0)
        pve.time_scale = args.time_scale
        pve.nodes.clear()
        for name in args.nodes:
            pve.add_node(name)
        pve.apitokens[TOKEN_ID] = secret
        await pve.start(certfile, keyfile)

        runner = web.AppRunner(control_app(pve), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, '127.0.0.1', 0).start()
        control_port = runner.addresses[0][1]

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if not args.ignore_stdin:
            watch_stdin(loop, stop)
        print(json.dumps({'api_port': pve.port, 'control_port': control_port, 'ca_file': certfile,
                          'other_ca_file': other_ca, 'fingerprint': fingerprint(der),
                          'token_id': TOKEN_ID, 'token_secret': secret,
                          'nodes': list(args.nodes)}), flush=True)
        await stop.wait()
        await runner.cleanup()
        await pve.stop()
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--nodes', nargs='+', default=['pve1', 'pve2', 'pve3'], help='node names')
    parser.add_argument('--time-scale', type=float, default=0.01,
                        help='real seconds per simulated PVE second; 0 ends tasks before the request returns')
    parser.add_argument('--token-secret', help='secret of root@pam!test (random if not given)')
    parser.add_argument('--workdir', help='where the certificates go (a temporary directory if not given)')
    parser.add_argument('--ignore-stdin', action='store_true', help='keep running when stdin closes')
    return parser.parse_args(argv)


if __name__ == '__main__':
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        pass
