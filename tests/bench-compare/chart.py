#!/usr/bin/env python3
"""The chart of docs/benchmarks.md, from the data `make bench-compare` wrote.

    chart.py docs/benchmarks.json docs/benchmarks.png

One row per scenario: converge wall time by N (log scale) and requests per VM by N,
pve-gitops against the Ansible playbook, with the ratio written over each pair.
"""

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {'pve-gitops': '#e57000', 'ansible': '#5a5a5a'}
LABELS = {'pve-gitops': 'pve-gitops apply --once', 'ansible': 'Ansible proxmox_kvm playbook'}


def run(runs, scenario, tool, n, phase='converge'):
    # The runs at PVE's default max_workers (the others are in the document's table).
    for r in runs:
        if (r['scenario'] == scenario and r['tool'] == tool and r['n'] == n and r['phase'] == phase
                and r.get('max_workers') is None):
            return r
    return None


def main(data_path, png_path):
    with open(data_path) as f:
        data = json.load(f)
    scenarios = [s for s in data['scenarios'] if s['sizes']]
    runs = data['runs']
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 4.2 * len(scenarios)), squeeze=False)
    width = 0.38
    for row, s in enumerate(scenarios):
        sizes = s['sizes']
        xs = range(len(sizes))
        for col, (metric, title, log) in enumerate([
                ('wall_s', 'converge wall time (s, log scale)', True),
                ('per_vm', 'requests per VM to converge', False)]):
            ax = axes[row][col]
            for i, tool in enumerate(('pve-gitops', 'ansible')):
                values = []
                for n in sizes:
                    r = run(runs, s['key'], tool, n)
                    if r is None:
                        values.append(0)
                    elif metric == 'per_vm':
                        values.append(r['requests'] / n)
                    else:
                        values.append(r[metric])
                bars = ax.bar([x + (i - 0.5) * width for x in xs], values, width,
                              color=COLORS[tool], label=LABELS[tool])
                ax.bar_label(bars, fmt='%.3g' if metric == 'wall_s' else '%.1f', fontsize=8, padding=2)
            for x, n in zip(xs, sizes):
                p, a = run(runs, s['key'], 'pve-gitops', n), run(runs, s['key'], 'ansible', n)
                if p and a:
                    if metric == 'wall_s':
                        text = '1 : {0:.0f}'.format(a['wall_s'] / p['wall_s'])
                    else:
                        text = '1 : {0:.1f}'.format(a['requests'] / max(p['requests'], 1))
                    ax.annotate(text, (x, 1), xycoords=('data', 'axes fraction'), xytext=(0, -14),
                                textcoords='offset points', ha='center', fontsize=9, fontweight='bold')
            if log:
                ax.set_yscale('log')
            ax.set_xticks(list(xs))
            ax.set_xticklabels(['N = {0}'.format(n) for n in sizes])
            ax.set_title('{0}\n{1}'.format(title, s['title']), fontsize=10)
            ax.margins(y=0.25)
            ax.grid(axis='y', alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=2, fontsize=9, frameon=False)
    fig.suptitle('pve-gitops against Ansible on fakepve (3 nodes, TLS, API token)', fontsize=12)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(png_path, dpi=110)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
