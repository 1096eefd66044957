"""Users, roles, ACLs and API tokens with state, for `pve-gitops init` and `doctor`.

fakepve 0.5 answers /access/users, /access/roles, /access/acl and the token endpoints
from the schema only: nothing is kept. This mixin keeps them as pve-access-control
does (PVE/API2/User.pm, Role.pm, ACL.pm, TokenAPI):

* users (root@pam always exists), roles (the built-in ones from fakepve's shapes.ROLES,
  read-only, and custom ones whose privileges must be in shapes.PRIVILEGES), ACL
  entries {path, type, ugid, roleid, propagate} and tokens;
* creating a token answers its secret once and makes it authenticate (pve.apitokens);
* every ACL change is expanded into fakepve's own permission table (`pve.acl`,
  user/token -> [(path, privileges)]), so the permission checks fakepve already does
  on every request apply to the new token; a privilege-separated token holds only what
  both it and its user hold, as in PVE;
* GET /access/permissions answers the effective privileges the same way.

Control routes (see control_routes): GET /access (the state, no secrets) and
POST /access/roles/{roleid} {"privs": [...]} (an administrator editing a role behind
the agent's back).
"""

from aiohttp import web

from fakepve import PveError, shapes
from fakepve.routing import die, param_error, split_list


def truthy(value, default=True):
    if value is None:
        return default
    return str(value).lower() in ('1', 'true', 'yes', 'on')


class AccessState(object):
    """Mixin for FakePve: stateful /access users, roles, ACL and tokens."""

    def _access(self):
        # Lazily made, so the mixin needs no __init__ of its own.
        if not hasattr(self, 'access_users'):
            self.access_users = {'root@pam': {'comment': '', 'enable': 1}}
            self.access_roles = {}
            self.access_acl = []
            self.access_tokens = {}
        return self

    def _routes_access_state(self):
        user, token = '/access/users/{userid}', '/access/users/{userid}/token'
        return [('GET', '/access/users', self._users_list), ('POST', '/access/users', self._user_create),
                ('GET', user, self._user_read), ('DELETE', user, self._user_delete),
                ('GET', '/access/roles', self._roles_list), ('POST', '/access/roles', self._role_create),
                ('GET', '/access/roles/{roleid}', self._role_read),
                ('PUT', '/access/roles/{roleid}', self._role_update),
                ('DELETE', '/access/roles/{roleid}', self._role_delete),
                ('GET', token, self._tokens_list), ('GET', token + '/{tokenid}', self._token_read),
                ('POST', token + '/{tokenid}', self._token_create),
                ('PUT', token + '/{tokenid}', self._token_update),
                ('DELETE', token + '/{tokenid}', self._token_delete),
                ('GET', '/access/acl', self._acl_list), ('PUT', '/access/acl', self._acl_update)]

    # ---------------------------------------------------------------- users

    async def _users_list(self, v, user):
        return [dict(userid=uid, **info) for uid, info in sorted(self._access().access_users.items())]

    async def _user_create(self, v, user):
        uid = v['userid']
        if uid in self._access().access_users:
            raise die("create user failed: user '{0}' already exists".format(uid))
        self.need_quorum()
        self.access_users[uid] = {'comment': v.get('comment', ''), 'enable': 1 if truthy(v.get('enable')) else 0}
        return None

    def _user(self, uid):
        info = self._access().access_users.get(uid)
        if info is None:
            raise die("no such user ('{0}')".format(uid))
        return info

    async def _user_read(self, v, user):
        return dict(self._user(v['userid']), tokens=[t.split('!')[1] for t in self.access_tokens
                                                     if t.split('!')[0] == v['userid']])

    async def _user_delete(self, v, user):
        self._user(v['userid'])
        del self.access_users[v['userid']]
        for tid in [t for t in self.access_tokens if t.split('!')[0] == v['userid']]:
            self._drop_token(tid)
        self._drop_acl(lambda e: e['ugid'] == v['userid'])
        return None

    # ---------------------------------------------------------------- roles

    def _role_privs(self, roleid):
        self._access()
        if roleid in shapes.ROLES:
            return set(shapes.ROLES[roleid])
        if roleid in self.access_roles:
            return set(self.access_roles[roleid])
        return None

    @staticmethod
    def _checked_privs(text):
        privs = split_list(text)
        for priv in privs:
            if priv not in shapes.PRIVILEGES:
                raise param_error(privs="invalid format - invalid privilege '{0}'\n".format(priv))
        return set(privs)

    async def _roles_list(self, v, user):
        self._access()
        out = [{'roleid': r, 'privs': ','.join(sorted(p)), 'special': 1} for r, p in sorted(shapes.ROLES.items())]
        out += [{'roleid': r, 'privs': ','.join(sorted(p)), 'special': 0} for r, p in sorted(self.access_roles.items())]
        return out

    async def _role_create(self, v, user):
        roleid = v['roleid']
        if self._role_privs(roleid) is not None:
            raise die("create role failed: role '{0}' already exists".format(roleid))
        self.need_quorum()
        self.access_roles[roleid] = self._checked_privs(v.get('privs'))
        return None

    async def _role_read(self, v, user):
        privs = self._role_privs(v['roleid'])
        if privs is None:
            raise die("role '{0}' does not exist".format(v['roleid']))
        return dict.fromkeys(sorted(privs), 1)

    async def _role_update(self, v, user):
        roleid = v['roleid']
        if roleid in shapes.ROLES:
            raise die("cannot modify built-in role '{0}'".format(roleid))
        if roleid not in self._access().access_roles:
            raise die("role '{0}' does not exist".format(roleid))
        self.need_quorum()
        privs = self._checked_privs(v.get('privs'))
        self.access_roles[roleid] = (self.access_roles[roleid] | privs) if truthy(v.get('append'), False) else privs
        self._sync_acl()
        return None

    async def _role_delete(self, v, user):
        if v['roleid'] not in self._access().access_roles:
            raise die("role '{0}' does not exist".format(v['roleid']))
        del self.access_roles[v['roleid']]
        self._drop_acl(lambda e: e['roleid'] == v['roleid'])
        return None

    # ---------------------------------------------------------------- tokens

    def _token_info(self, tid):
        info = self.access_tokens[tid]
        return {'privsep': 1 if info['privsep'] else 0, 'comment': info['comment'], 'expire': 0}

    async def _tokens_list(self, v, user):
        self._user(v['userid'])
        return [dict(tokenid=tid.split('!')[1], **self._token_info(tid))
                for tid in sorted(self.access_tokens) if tid.split('!')[0] == v['userid']]

    def _token(self, v):
        self._user(v['userid'])
        tid = '{0}!{1}'.format(v['userid'], v['tokenid'])
        if tid not in self.access_tokens:
            raise die("no such token '{0}' for user '{1}'".format(v['tokenid'], v['userid']))
        return tid

    async def _token_read(self, v, user):
        return self._token_info(self._token(v))

    async def _token_create(self, v, user):
        self._user(v['userid'])
        tid = '{0}!{1}'.format(v['userid'], v['tokenid'])
        if tid in self.access_tokens:
            raise die('Token already exists.')
        self.need_quorum()
        self.access_tokens[tid] = {'privsep': truthy(v.get('privsep')), 'comment': v.get('comment', '')}
        secret = self._new_secret(tid)
        self._sync_acl()
        return {'full-tokenid': tid, 'info': self._token_info(tid), 'value': secret}

    async def _token_update(self, v, user):
        tid = self._token(v)
        self.need_quorum()
        if v.get('privsep') is not None:
            self.access_tokens[tid]['privsep'] = truthy(v['privsep'])
        if v.get('comment') is not None:
            self.access_tokens[tid]['comment'] = v['comment']
        out = dict(self._token_info(tid))
        if truthy(v.get('regenerate'), False):
            out.update({'full-tokenid': tid, 'value': self._new_secret(tid)})
        self._sync_acl()
        return out

    async def _token_delete(self, v, user):
        self._drop_token(self._token(v))
        return None

    def _new_secret(self, tid):
        import uuid
        secret = str(uuid.uuid4())
        self.apitokens[tid] = secret
        return secret

    def _drop_token(self, tid):
        self.access_tokens.pop(tid, None)
        self.apitokens.pop(tid, None)
        self._drop_acl(lambda e: e['ugid'] == tid)

    # ---------------------------------------------------------------- ACL

    async def _acl_list(self, v, user):
        return [dict(e) for e in self._access().access_acl]

    async def _acl_update(self, v, user):
        self._access()
        path = '/' + '/'.join(seg for seg in v['path'].split('/') if seg)
        roles = split_list(v.get('roles'))
        users, tokens = split_list(v.get('users')), split_list(v.get('tokens'))
        groups = split_list(v.get('groups'))
        if groups:
            raise die('fakepve harness: ACL groups are not simulated')
        if not users and not tokens:
            raise die('missing user/token specification')
        for roleid in roles:
            if self._role_privs(roleid) is None:
                raise die("role '{0}' does not exist".format(roleid))
        for uid in users:
            if uid not in self.access_users:
                raise die("user '{0}' does not exist".format(uid))
        for tid in tokens:
            if tid not in self.access_tokens:
                raise die("no such token '{0}'".format(tid))
        self.need_quorum()
        propagate = 1 if truthy(v.get('propagate')) else 0
        for kind, ids in (('user', users), ('token', tokens)):
            for ugid in ids:
                for roleid in roles:
                    self.access_acl = [e for e in self.access_acl if not (
                        e['path'] == path and e['ugid'] == ugid and e['roleid'] == roleid)]
                    if not truthy(v.get('delete'), False):
                        self.access_acl.append({'path': path, 'type': kind, 'ugid': ugid, 'roleid': roleid,
                                                'propagate': propagate})
        self._sync_acl()
        return None

    def _drop_acl(self, pred):
        self.access_acl = [e for e in self._access().access_acl if not pred(e)]
        self._sync_acl()

    def _sync_acl(self):
        """Expand the ACL into fakepve's permission table (user/token -> [(path, privileges)])."""
        if not self._access().access_acl and self.acl is None:
            return
        table = {}
        for e in self.access_acl:
            table.setdefault(e['ugid'], []).append((e['path'], self._role_privs(e['roleid']) or set()))
        self.acl = table

    # ---------------------------------------------------------------- checks

    def _acl_allows(self, ugid, path, priv):
        """Whether ugid's own ACL entries (not its user's) grant priv on path or a parent of it."""
        paths = [path]
        if path.startswith('/vms/'):
            vmid = int(path.split('/')[2])
            paths += ['/vms'] + ['/pool/' + name for name, ids in self.pools.items() if vmid in ids]
        for granted, privs in (self.acl or {}).get(ugid, []):
            if priv in privs and (granted == '/' or any(p == granted or p.startswith(granted + '/') for p in paths)):
                return True
        return False

    def allowed(self, user, path, priv):
        token = getattr(self, 'access_tokens', {}).get(user)
        if token is not None and token['privsep'] and self.acl is not None:
            # A privilege-separated token: what the token and its user both hold.
            return self._acl_allows(user, path, priv) and super().allowed(user.split('!')[0], path, priv)
        return super().allowed(user, path, priv)

    async def _permissions(self, v, user):
        who = v.get('userid') or user
        if who.split('!')[0] == 'root@pam' or self.acl is None:
            return await super()._permissions(v, user)
        names = set(e['ugid'] for e in self._access().access_acl)
        paths = sorted(set(p for ugid in (who, who.split('!')[0]) if ugid in names
                           for p, _ in self.acl.get(ugid, [])))
        if v.get('path') is not None:
            paths = [v['path']]
        out = {}
        for path in paths:
            try:
                held = [p for p in shapes.PRIVILEGES if self.allowed(who, path, p)]
            except ValueError:  # '/vms/<not a number>'
                held = []
            if held:
                out[path] = dict.fromkeys(held, 1)
        return out

    def access_state(self):
        self._access()
        return {'users': self.access_users, 'roles': dict((r, sorted(p)) for r, p in self.access_roles.items()),
                'acl': self.access_acl,
                'tokens': dict((t, self._token_info(t)) for t in self.access_tokens)}


def control_routes(pve, routes):
    """Control API routes of this module, added to the harness's table."""

    @routes.get('/access')
    async def access(request):
        return web.json_response(pve.access_state())

    @routes.post('/access/roles/{roleid}')
    async def access_role(request):
        b = await request.json()
        roleid = request.match_info['roleid']
        try:
            pve._access().access_roles[roleid] = AccessState._checked_privs(','.join(b.get('privs') or []))
        except PveError as e:
            return web.json_response({'error': e.message, 'errors': e.errors}, status=400)
        pve._sync_acl()
        return web.json_response(pve.access_state())
