"""Cloud images, downloads and snippet files for the pve-gitops harness.

fakepve 0.5 keeps a `download-url` as a volume of the size the request names, never
fetches the URL and never checks a checksum; it keeps `import-from=` as a drive option
instead of importing; and it lists only volumes it made itself, so a snippet file written
into a storage's directory never shows. This mixin closes those gaps as pve-storage and
qemu-server behave:

* remote files: tests register what a URL serves (`POST /remote_files`); `download-url`
  of a registered URL stores a volume of that size and fails its task, as PVE does, when
  the request's checksum differs; an unregistered URL fails the task (nothing here ever
  touches the network);
* `import-from=<volid>` on a new drive: the source must exist (content `import`, `iso` or
  `images`); the new disk gets the source's size and the option is not kept (qemu-server
  imports, then forgets where from);
* snippet files: for a storage with a `path`, `GET .../content` also lists the files in
  `<path>/snippets/` as `snippets` volumes. A node-local storage (not shared) is read below
  that node's root (`POST /node_roots`), so tests give each simulated node its own disk;
  a shared one is read at `path` itself, one copy for every node;
* `POST /storages`: put storages straight into storage.cfg (any type, `path`, `shared`,
  content), e.g. a `dir` storage whose path is a test's temporary directory.
"""

import hashlib
import os

from aiohttp import web

from fakepve import PveError
from fakepve.model import TaskError
from fakepve.qemu import DRIVE_KEY, NEW_DISK, join_drive, split_drive, volume_ref
from fakepve.routing import die

ALGORITHMS = ('md5', 'sha1', 'sha224', 'sha256', 'sha384', 'sha512')
# Content types `import-from` takes a source of (qemu-server's check_volume_access for import).
IMPORT_SOURCES = ('import', 'images', 'iso')


class ImagesMixin(object):
    """Mixin of the harness's FakePve subclass (see the module doc)."""

    # url -> {'size': bytes, 'md5': hex, ..., 'sha512': hex}
    remote_files = None
    # node -> directory that stands for that node's `/` (node-local storages only)
    node_roots = None

    def _images_state(self):
        if self.remote_files is None:
            self.remote_files, self.node_roots, self._download_errors = {}, {}, {}
            # (storage, filename) -> (size, node) of a download under way;
            # (storage, volname) -> nodes that hold a downloaded file on a node-local storage
            self._download_sizes, self.downloaded_on = {}, {}

    # ------------------------------------------------------------ download-url

    async def _download_url(self, request):
        from fakepve.server import params
        self._images_state()
        p = await params(request)
        url, filename = p.get('url'), p.get('filename')
        remote = self.remote_files.get(url)
        problem = None
        if remote is None:
            problem = "download failed: no route to '{0}' (the test harness serves registered URLs only)".format(url)
        elif p.get('checksum'):
            algorithm = p.get('checksum-algorithm')
            got = remote.get(algorithm)
            want = str(p['checksum']).lower()
            if got != want:
                problem = "checksum mismatch: got '{0}' != expect '{1}'".format(got, want)
        key = (request.match_info['storage'], filename)
        if problem is not None:
            self._download_errors[key] = problem
        else:
            self._download_sizes[key] = (remote['size'], request.match_info['node'])
        return await super()._download_url(request)

    def store_file(self, storage, name, size, content='iso'):
        self._images_state()
        problem = self._download_errors.pop((storage, name), None)
        if problem is not None:
            raise TaskError(problem)
        size, node = self._download_sizes.pop((storage, name), (size, None))
        if node is not None:
            self.downloaded_on.setdefault((storage, '{0}/{1}'.format(content, name)), set()).add(node)
        return super().store_file(storage, name, size, content)

    def _on_node(self, sid, volname, node):
        """Whether a file on storage `sid` is on `node`: a download to a node-local storage is only
        on the nodes it was downloaded to."""
        self._images_state()
        nodes = self.downloaded_on.get((sid, volname))
        return nodes is None or (self.storages.get(sid) or {}).get('shared') or node in nodes

    # ------------------------------------------------------------ import-from

    def _qm_new_drive(self, vmid, key, value, default):
        volume, props = split_drive(value)
        source = props.pop('import-from', None)
        if source is None:
            return super()._qm_new_drive(vmid, key, value, default)
        if not NEW_DISK.match(volume):
            raise die("'import-from' requires special syntax - use <storage ID>:0,import-from=<source>")
        sid, name = volume_ref(source)
        vol = self._volumes(sid).get(name) if sid in self.storages else None
        vm = self.vm(vmid)
        if vol is None or (vm is not None and not self._on_node(sid, name, vm.node)):
            raise die("volume '{0}' does not exist".format(source))
        if vol.get('content') not in IMPORT_SOURCES:
            raise die("{0}: content type '{1}' cannot be imported".format(source, vol.get('content')))
        gib = max(int(vol.get('size') or 0), 1) / 1024 ** 3
        target = volume.split(':')[0] if ':' in volume else default
        made_value, made = super()._qm_new_drive(vmid, key, join_drive('{0}:{1}'.format(target, gib), props),
                                                 default)
        return made_value, made

    # ------------------------------------------------------------ disks added by config writes

    # qemu-server's update_vm allocates a new disk given as `<storage>:<size in GiB>` in a
    # config write (PUT or POST), as a create does; fakepve 0.5 stores the text as it came.
    # (Cloud-init drives are left as they came: other tests compare them as written.)
    async def _apply_config(self, vm, user, p):
        p = dict(p)
        for key, value in list(p.items()):
            volume, props = split_drive(str(value)) if DRIVE_KEY.match(key) else (None, {})
            if volume and NEW_DISK.match(volume) and props.get('media') != 'cdrom':
                try:
                    p[key], _made = self._qm_new_drive(vm.vmid, key, str(value), None)
                except TaskError as e:
                    raise PveError(500, str(e)) from e
        return await super()._apply_config(vm, user, p)

    # ------------------------------------------------------------ snippet files

    def snippet_dir(self, sid, node):
        """The directory whose files node `node` sees as `<sid>:snippets/...`, or None."""
        self._images_state()
        store = self.storages.get(sid) or {}
        path = store.get('path')
        if not path:
            return None
        root = '' if store.get('shared') else self.node_roots.get(node, '')
        return root + path.rstrip('/') + '/snippets'

    async def _content_list(self, v, user):
        sid, node = v['storage'], v['node']
        out = [item for item in await super()._content_list(v, user)
               if self._on_node(sid, item['volid'].split(':', 1)[1], node)]
        store = self.storages.get(sid) or {}
        if v.get('content') not in (None, 'snippets') or 'snippets' not in str(store.get('content', '')).split(','):
            return out
        directory = self.snippet_dir(sid, node)
        if directory and os.path.isdir(directory):
            known = set(item['volid'] for item in out)
            for fname in sorted(os.listdir(directory)):
                full = os.path.join(directory, fname)
                volid = '{0}:snippets/{1}'.format(sid, fname)
                if os.path.isfile(full) and volid not in known:
                    out.append({'volid': volid, 'content': 'snippets', 'format': 'snippet',
                                'size': os.path.getsize(full), 'ctime': int(os.path.getmtime(full))})
        return sorted(out, key=lambda item: item['volid'].lower())


def hashes(data):
    out = dict((a, hashlib.new(a, data).hexdigest()) for a in ALGORITHMS)
    out['size'] = len(data)
    return out


def control_routes(routes, pve):
    """The control API routes of this module, added to the harness's RouteTableDef."""

    async def body(request):
        data = await request.json() if request.can_read_body else {}
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text='body is not a JSON object')
        return data

    @routes.post('/remote_files')
    async def remote_files(request):
        # {"url": "https://...", "content": "text the URL serves"}: what a download-url fetches.
        b = await body(request)
        pve._images_state()
        entry = hashes(str(b.get('content', '')).encode())
        entry['size'] = int(b.get('size', entry['size']))  # how large the image claims to be
        pve.remote_files[b['url']] = entry
        return web.json_response(entry)

    @routes.post('/node_roots')
    async def node_roots(request):
        # {"pve1": "/tmp/x/pve1", ...}: where each node's `/` is, for node-local storage paths.
        b = await body(request)
        pve._images_state()
        pve.node_roots.update(dict((k, str(x)) for k, x in b.items()))
        return web.json_response(pve.node_roots)

    @routes.post('/storages')
    async def storages(request):
        # {"local": {"type": "dir", "path": "/tmp/x", "content": "iso,import,snippets,images", "shared": 0}}:
        # storage.cfg entries, replaced whole (the fake's own state keys are added).
        b = await body(request)
        for sid, options in b.items():
            store = dict(options)
            store.setdefault('type', 'dir')
            store.setdefault('active', 1)
            store.setdefault('files', set())
            store.setdefault('volumes', {})
            pve.storages[sid] = store
        return web.json_response(sorted(pve.storages))

    @routes.get('/storages/{sid}/volumes')
    async def volumes(request):
        sid = request.match_info['sid']
        if sid not in pve.storages:
            return web.json_response({'error': 'no storage ' + sid}, status=404)
        return web.json_response(dict((name, dict((k, x) for k, x in vol.items() if k != 'files'))
                                      for name, vol in pve._volumes(sid).items()))

    return routes


__all__ = ['ImagesMixin', 'control_routes', 'PveError']
