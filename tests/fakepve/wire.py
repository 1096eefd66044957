"""The bytes of PVE's JSON answers.

pveproxy writes its answers with Perl's JSON module: compact (no space after `,` and
`:`) and UTF-8 as is. fakepve answers through aiohttp's `web.json_response`, whose
default is Python's `json.dumps`: a space after every separator and non-ASCII escaped
as `\\uXXXX`. The content is the same, but a listing of 1,000 guests is 13% longer,
and what a client spends reading it (the scale benchmark's idle pass) is measured on
fakepve's bytes. `use_pve_json()` makes every JSON answer (fakepve's and the
harness's) the bytes PVE would send.
"""

import functools
import json

from aiohttp import web

PVE_JSON = functools.partial(json.dumps, separators=(',', ':'), ensure_ascii=False)


def use_pve_json():
    """Make `web.json_response` encode as PVE does (modules look it up at each call)."""
    plain = web.json_response
    if getattr(plain, 'pve_json', False):
        return

    def json_response(*args, dumps=PVE_JSON, **kwargs):
        return plain(*args, dumps=dumps, **kwargs)

    json_response.pve_json = True
    web.json_response = json_response
