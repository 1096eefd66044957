"""Stateful SDN for the pve-gitops harness: zones, vnets and subnets, staged and applied.

fakepve 0.5 answers /cluster/sdn/... from the schema only (nothing is stored). This mixin
keeps the objects as pve-network does (src/PVE/API2/Network/SDN/{Zones,Vnets,Subnets}.pm):

* writes change the *config* (/etc/pve/sdn/*.cfg); `PUT /cluster/sdn` copies the config
  to the *running* config (.running-config) in a `reloadnetworkall` task;
* `GET` shows the config, `?running=1` the running config, and `?pending=1` the running
  values with a `pending` object of what the next apply changes and a `state`
  (`new`, `changed`, `deleted`), as PVE::Network::SDN::pending_config computes it;
* ids are checked by the schema (2-8 characters for zones and vnets); the checks the
  plugins make (required keys per zone type, vnet tags, the gateway in its subnet, no
  delete of a zone with vnets or a vnet with subnets) answer with PVE's errors.

Wired into harness.py's CountingPve as a base class; `sdn_control(routes, pve)` adds
`GET /sdn` to the control API (the whole state and how many applies ran).
"""

import copy
import hashlib
import ipaddress
import json

from aiohttp import web
from fakepve.routing import StatefulRoutes, check_digest, die, param_error, split_list

TYPES = ('zones', 'vnets', 'subnets')
# Keys of the plugin options each zone type requires (the createSchema marks them optional => 0).
ZONE_REQUIRED = {'vlan': ('bridge',), 'qinq': ('bridge', 'tag'), 'vxlan': ('peers',),
                 'evpn': ('controller', 'vrf-vxlan'), 'simple': ()}
# Zone types whose vnets need a tag (a VLAN id or a VNI).
TAGGED = ('vlan', 'qinq', 'vxlan', 'evpn')
# Keys the API takes but does not store as object options.
NOT_STORED = ('lock-token', 'digest', 'delete', 'type', 'zone', 'vnet', 'subnet')


def encode_value(key, value):
    """PVE::Network::SDN::encode_value: list-valued keys compared as sorted comma lists."""
    if key in ('nodes', 'exitnodes', 'dhcp-range', 'interfaces'):
        if isinstance(value, list):
            return ','.join(sorted(str(v) for v in value))
    return value


def parse_range(text):
    out = {}
    for part in str(text).split(','):
        key, _, value = part.partition('=')
        out[key.strip()] = value.strip()
    return out


class SdnApi(StatefulRoutes):
    """Mixin of FakePve: /cluster/sdn zones, vnets, subnets and the apply."""

    def _sdn(self):
        state = self.__dict__.get('_sdn_state')
        if state is None:
            state = self.__dict__['_sdn_state'] = {
                'config': dict((t, {}) for t in TYPES), 'running': dict((t, {}) for t in TYPES), 'applies': 0}
        return state

    def _routes_sdn(self):
        z, v, s = '/cluster/sdn/zones', '/cluster/sdn/vnets', '/cluster/sdn/vnets/{vnet}/subnets'
        return [('GET', z, self._sdn_zones), ('POST', z, self._sdn_zone_create),
                ('GET', z + '/{zone}', self._sdn_zone_read), ('PUT', z + '/{zone}', self._sdn_zone_update),
                ('DELETE', z + '/{zone}', self._sdn_zone_delete),
                ('GET', v, self._sdn_vnets), ('POST', v, self._sdn_vnet_create),
                ('GET', v + '/{vnet}', self._sdn_vnet_read), ('PUT', v + '/{vnet}', self._sdn_vnet_update),
                ('DELETE', v + '/{vnet}', self._sdn_vnet_delete),
                ('GET', s, self._sdn_subnets), ('POST', s, self._sdn_subnet_create),
                ('GET', s + '/{subnet}', self._sdn_subnet_read), ('PUT', s + '/{subnet}', self._sdn_subnet_update),
                ('DELETE', s + '/{subnet}', self._sdn_subnet_delete),
                ('PUT', '/cluster/sdn', self._sdn_apply)]

    # ------------------------------------------------------------------ views

    def _sdn_digest(self, kind):
        return hashlib.sha1(json.dumps(self._sdn()['config'][kind], sort_keys=True).encode()).hexdigest()

    def _sdn_view(self, kind, v):
        """The objects of one type as the index shows them, in id order."""
        state = self._sdn()
        if v.get('pending'):
            objects = self._sdn_pending(kind)
            digest = None
        elif v.get('running'):
            objects, digest = state['running'][kind], None
        else:
            objects, digest = state['config'][kind], self._sdn_digest(kind)
        key = kind[:-1]
        out = []
        for oid in sorted(objects):
            entry = dict(copy.deepcopy(objects[oid]), **{key: oid})
            if kind == 'subnets':
                entry.update(self._subnet_keys(oid))
                if 'dhcp-range' in entry:
                    entry['dhcp-range'] = [parse_range(r) for r in entry['dhcp-range']]
            if digest:
                entry['digest'] = digest
            out.append(entry)
        return out

    def _sdn_pending(self, kind):
        """PVE::Network::SDN::pending_config for one type."""
        state = self._sdn()
        running, config = state['running'][kind], state['config'][kind]
        pending = {}
        for oid, robj in sorted(running.items()):
            cobj = config.get(oid) or {}
            entry = pending.setdefault(oid, {})
            for key, value in robj.items():
                entry[key] = value
                if not cobj:
                    entry['state'] = 'deleted'
                elif key not in cobj:
                    entry.setdefault('pending', {})[key] = 'deleted'
                    entry['state'] = 'changed'
                elif encode_value(key, value) != encode_value(key, cobj[key]):
                    entry['state'] = 'changed'
            if entry.get('state') and 'pending' not in entry:
                entry['pending'] = {}
        for oid, cobj in sorted(config.items()):
            robj = running.get(oid) or {}
            entry = pending.setdefault(oid, {})
            for key, value in cobj.items():
                cval, rval = encode_value(key, value), encode_value(key, robj.get(key))
                if key in ('type', 'vnet'):
                    entry[key] = cval
                elif rval is None or cval != rval:
                    entry.setdefault('pending', {})[key] = value
                if not robj:
                    entry['state'] = 'new'
                elif rval is None and cval is not None:
                    entry['state'] = 'changed'
            if entry.get('state') and 'pending' not in entry:
                entry['pending'] = {}
        return pending

    @staticmethod
    def _subnet_keys(oid):
        zone, network, mask = oid.split('-')
        return {'id': oid, 'cidr': '{0}/{1}'.format(network, mask), 'zone': zone, 'network': network, 'mask': mask}

    def _sdn_one(self, kind, oid, v):
        for entry in self._sdn_view(kind, v):
            if entry[kind[:-1]] == oid:
                return entry
        raise die("sdn {0} '{1}' does not exist".format(kind[:-1], oid))

    # ---------------------------------------------------------------- helpers

    def _sdn_options(self, v):
        out = {}
        for key, value in v.items():
            if key in NOT_STORED or value is None:
                continue
            if key in ('nodes', 'exitnodes', 'peers'):
                value = ','.join(sorted(split_list(value)))
            if key == 'dhcp-range':
                value = value if isinstance(value, list) else [value]
            out[key] = value
        return out

    def _sdn_update(self, obj, v, required=()):
        self.need_quorum()
        for name in split_list(v.get('delete')):
            if name in required:
                raise param_error(delete="unable to delete required option '{0}'".format(name))
            obj.pop(name, None)
        obj.update(self._sdn_options(v))

    def _sdn_exists(self, kind, oid):
        objects = self._sdn()['config'][kind]
        if oid not in objects:
            raise die("sdn {0} '{1}' does not exist".format(kind[:-1], oid))
        return objects[oid]

    # ------------------------------------------------------------------ zones

    async def _sdn_zones(self, v, user):
        out = self._sdn_view('zones', v)
        return [z for z in out if not v.get('type') or z.get('type') == v['type']]

    async def _sdn_zone_read(self, v, user):
        return self._sdn_one('zones', v['zone'], v)

    async def _sdn_zone_create(self, v, user):
        self.need_quorum()
        zones = self._sdn()['config']['zones']
        zid, ztype = v['zone'], v['type']
        missing = dict((k, 'property is missing and it is not optional')
                       for k in ZONE_REQUIRED.get(ztype, ()) if v.get(k) is None)
        if missing:
            raise param_error(**missing)
        if zid in zones:
            raise die("create sdn zone object failed: sdn zone object ID '{0}' already defined".format(zid))
        zones[zid] = dict(self._sdn_options(v), type=ztype)

    async def _sdn_zone_update(self, v, user):
        zones = self._sdn()['config']['zones']
        check_digest(self._sdn_digest('zones'), v.get('digest'))
        zone = self._sdn_exists('zones', v['zone'])
        self._sdn_update(zone, v, ZONE_REQUIRED.get(zone['type'], ()))
        zones[v['zone']] = zone

    async def _sdn_zone_delete(self, v, user):
        self.need_quorum()
        self._sdn_exists('zones', v['zone'])
        for vid, vnet in sorted(self._sdn()['config']['vnets'].items()):
            if vnet.get('zone') == v['zone']:
                raise die("delete sdn zone object failed: Can't delete zone {0}, vnet {1} is using it"
                          .format(v['zone'], vid))
        del self._sdn()['config']['zones'][v['zone']]

    # ------------------------------------------------------------------ vnets

    def _check_vnet(self, vid, vnet):
        zone = self._sdn()['config']['zones'].get(vnet.get('zone'))
        if zone is None:
            raise param_error(zone="zone '{0}' does not exist".format(vnet.get('zone')))
        if zone['type'] in TAGGED and vnet.get('tag') is None:
            raise param_error(tag='missing vlan tag' if zone['type'] in ('vlan', 'qinq') else 'missing vxlan tag')
        if zone['type'] == 'simple' and vnet.get('tag') is not None:
            raise param_error(tag="vlan tag is not allowed on simple zone")
        for other, obj in self._sdn()['config']['vnets'].items():
            if other != vid and vnet.get('tag') is not None and obj.get('tag') == vnet.get('tag') \
                    and zone['type'] in ('vxlan', 'evpn') and \
                    self._sdn()['config']['zones'].get(obj.get('zone'), {}).get('type') in ('vxlan', 'evpn'):
                raise param_error(tag="tag {0} already exists in vnet: {1}".format(vnet['tag'], other))

    async def _sdn_vnets(self, v, user):
        return self._sdn_view('vnets', v)

    async def _sdn_vnet_read(self, v, user):
        return self._sdn_one('vnets', v['vnet'], v)

    async def _sdn_vnet_create(self, v, user):
        self.need_quorum()
        vnets = self._sdn()['config']['vnets']
        vid = v['vnet']
        if vid in vnets:
            raise die("create sdn vnet object failed: sdn vnet object ID '{0}' already defined".format(vid))
        if vid in self._sdn()['config']['zones']:
            raise die("create sdn vnet object failed: sdn vnet object ID '{0}' is a zone id".format(vid))
        vnet = dict(self._sdn_options(v), zone=v['zone'], type='vnet')
        self._check_vnet(vid, vnet)
        vnets[vid] = vnet

    async def _sdn_vnet_update(self, v, user):
        check_digest(self._sdn_digest('vnets'), v.get('digest'))
        vnet = copy.deepcopy(self._sdn_exists('vnets', v['vnet']))
        self._sdn_update(vnet, v, ('zone',))
        if v.get('zone'):
            vnet['zone'] = v['zone']
        self._check_vnet(v['vnet'], vnet)
        self._sdn()['config']['vnets'][v['vnet']] = vnet

    async def _sdn_vnet_delete(self, v, user):
        self.need_quorum()
        self._sdn_exists('vnets', v['vnet'])
        if any(s.get('vnet') == v['vnet'] for s in self._sdn()['config']['subnets'].values()):
            raise param_error(vnet="Can't delete vnet if subnets exists")
        del self._sdn()['config']['vnets'][v['vnet']]

    # ---------------------------------------------------------------- subnets

    @staticmethod
    def _check_subnet(cidr, subnet):
        net = ipaddress.ip_network(cidr, strict=False)
        gateway = subnet.get('gateway')
        if gateway and ipaddress.ip_address(gateway) not in net:
            raise param_error(gateway='gateway ip {0} is not part of subnet {1}'.format(gateway, cidr))
        for text in subnet.get('dhcp-range') or []:
            r = parse_range(text)
            try:
                start = ipaddress.ip_address(r['start-address'])
                end = ipaddress.ip_address(r['end-address'])
            except (KeyError, ValueError):
                raise param_error(**{'dhcp-range': 'invalid format - {0}'.format(text)}) from None
            if start > end:
                raise param_error(**{'dhcp-range': 'start-address {0} must be smaller than end-address {1}'
                                     .format(start, end)})
            for addr, name in ((start, 'start-address'), (end, 'end-address')):
                if addr not in net:
                    raise param_error(**{'dhcp-range': '{0} {1} is not in subnet {2}'.format(name, addr, cidr)})

    async def _sdn_subnets(self, v, user):
        self._sdn_exists('vnets', v['vnet'])
        return [s for s in self._sdn_view('subnets', v) if s.get('vnet') == v['vnet']]

    async def _sdn_subnet_read(self, v, user):
        entry = self._sdn_one('subnets', v['subnet'], v)
        if entry.get('vnet') != v['vnet']:
            raise die("sdn subnet '{0}' does not exist".format(v['subnet']))
        return entry

    async def _sdn_subnet_create(self, v, user):
        self.need_quorum()
        config = self._sdn()['config']
        vnet = self._sdn_exists('vnets', v['vnet'])
        try:
            net = ipaddress.ip_network(v['subnet'], strict=True)
        except ValueError:
            raise param_error(subnet='value does not look like a valid CIDR network') from None
        sid = '{0}-{1}-{2}'.format(vnet['zone'], net.network_address, net.prefixlen)
        if sid in config['subnets']:
            raise die("create sdn subnet object failed: sdn subnet object ID '{0}' already defined".format(sid))
        subnet = dict(self._sdn_options(v), vnet=v['vnet'], type='subnet')
        self._check_subnet(str(net), subnet)
        config['subnets'][sid] = subnet

    async def _sdn_subnet_update(self, v, user):
        check_digest(self._sdn_digest('subnets'), v.get('digest'))
        sid = v['subnet']
        subnet = copy.deepcopy(self._sdn_exists('subnets', sid))
        if subnet.get('vnet') != v['vnet']:
            raise die("sdn subnet '{0}' does not exist".format(sid))
        self._sdn_update(subnet, v, ('vnet',))
        self._check_subnet(self._subnet_keys(sid)['cidr'], subnet)
        self._sdn()['config']['subnets'][sid] = subnet

    async def _sdn_subnet_delete(self, v, user):
        self.need_quorum()
        subnet = self._sdn_exists('subnets', v['subnet'])
        if subnet.get('vnet') != v['vnet']:
            raise die("sdn subnet '{0}' does not exist".format(v['subnet']))
        del self._sdn()['config']['subnets'][v['subnet']]

    # ------------------------------------------------------------------ apply

    async def _sdn_apply(self, v, user):
        self.need_quorum()
        state = self._sdn()
        state['running'] = copy.deepcopy(state['config'])
        state['applies'] += 1

        async def body():
            await self.pause(1)
        return await self.task(sorted(self.nodes)[0], 'reloadnetworkall', '', user or 'root@pam', body)

    def sdn_state(self):
        state = self._sdn()
        return {'config': state['config'], 'running': state['running'], 'applies': state['applies'],
                'pending': dict((kind, self._sdn_pending(kind)) for kind in TYPES)}


def sdn_control(routes, pve):
    """Control API: `GET /sdn` is the config, the running config, the pending view and the
    number of `PUT /cluster/sdn` applies since the start."""
    @routes.get('/sdn')
    async def sdn(request):
        return web.json_response(pve.sdn_state())
