"""The `gan` tab's server side: a TensorBoard dynamic plugin. Its page is plain ES modules under static/ (no build
step, nothing fetched from elsewhere); its data comes from TensorBoard's data provider (the Rust data server or the
Python reader, whichever TensorBoard runs), so loading stays incremental and only chosen runs are read:

  runs          every run: experiment, sweep, status (run.json), its grid tags, primary metric, last update
  run?run=R     one run: each grid tag's (step, blob key) list and its primary metric's points
  blob?key=K    one image (PNG bytes)
"""
from __future__ import annotations

import json
import math
import os
from importlib import resources
from pathlib import Path

from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from gan.dashboard import IMAGES_KEPT, view
from gan.metrics import protocol

IMAGES, SCALARS = "images", "scalars"  # the data of TensorBoard's own plugins that this tab reads
STATIC = {"index.js": "text/javascript", "chart.js": "text/javascript", "style.css": "text/css"}
POINTS_KEPT = 100_000  # scalar points read per series: all that TensorBoard kept (its default keeps 1,000)


class GanPlugin(base_plugin.TBPlugin):
    plugin_name = "gan"

    def __init__(self, context):
        self.data = context.data_provider
        self.logdir = Path(os.path.expanduser(context.logdir or ""))
        self.kept = (context.sampling_hints or {}).get(IMAGES) or IMAGES_KEPT

    def get_plugin_apps(self):
        apps = {f"/{name}": self._static(name, kind) for name, kind in STATIC.items()}
        return apps | {"/runs": self._runs, "/run": self._run, "/blob": self._blob}

    def is_active(self) -> bool:
        return False  # active when some run logged images (data_plugin_names), TensorBoard asks the provider

    def data_plugin_names(self):
        return (IMAGES,)

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="GAN", disable_reload=True)

    # ---- routes --------------------------------------------------------------------------------------------------
    def _static(self, name: str, kind: str):
        body = (resources.files("gan.dashboard") / "static" / name).read_bytes()

        @wrappers.Request.application
        def serve(request):
            return http_util.Respond(request, body, kind)

        return serve

    @wrappers.Request.application
    def _runs(self, request):
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        grids = self.data.list_blob_sequences(ctx, experiment_id=eid, plugin_name=IMAGES)
        scalars = self.data.list_scalars(ctx, experiment_id=eid, plugin_name=SCALARS)
        out = []
        for r in self.data.list_runs(ctx, experiment_id=eid):
            name, tags = r.run_name, grids.get(r.run_name, {})
            facts = view.run_facts(self.logdir, name)  # a small file per run: hundreds read in milliseconds
            if not facts and not tags:  # no run folder of ours and nothing to show (a sweep's mean curves)
                continue
            primary = protocol.primary(scalars.get(name, {})).tag
            series = list(tags.values()) + ([scalars[name][primary]] if primary else [])
            out.append({"run": name, **facts, "grids": sorted(tags), "primary": primary,
                        "label": view.metric_label(primary) if primary else None,
                        "updated": max((s.max_wall_time for s in series), default=None),
                        "last_step": max((s.max_step for s in series), default=None)})
        return _json(request, {"runs": sorted(out, key=lambda x: x["run"]), "names": view.GRID_NAMES})

    @wrappers.Request.application
    def _run(self, request):
        ctx, eid = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        name = request.args.get("run", "")
        only = provider.RunTagFilter(runs=[name])
        seqs = self.data.read_blob_sequences(ctx, experiment_id=eid, plugin_name=IMAGES, downsample=self.kept,
                                             run_tag_filter=only).get(name, {})
        grids = {tag: [[d.step, d.values[2].blob_key] for d in data if len(d.values) > 2]
                 for tag, data in seqs.items()}  # values: width, height, then the image(s)
        tags = self.data.list_scalars(ctx, experiment_id=eid, plugin_name=SCALARS, run_tag_filter=only).get(name, {})
        primary = protocol.primary(tags).tag
        points = []
        if primary:
            data = self.data.read_scalars(ctx, experiment_id=eid, plugin_name=SCALARS, downsample=POINTS_KEPT,
                                          run_tag_filter=provider.RunTagFilter(runs=[name], tags=[primary]))
            points = [[d.step, d.value] for d in data.get(name, {}).get(primary, []) if math.isfinite(d.value)]
        metric = {"tag": primary, "label": view.metric_label(primary) if primary else None, "points": points,
                  "higher_is_better": bool(primary) and protocol.higher_is_better(primary)}
        return _json(request, {"run": name, "grids": grids, "metric": metric})

    @wrappers.Request.application
    def _blob(self, request):
        ctx = plugin_util.context(request.environ)
        data = self.data.read_blob(ctx, blob_key=request.args.get("key", ""))
        return http_util.Respond(request, data, "image/png")


def _json(request, obj):
    return http_util.Respond(request, json.dumps(obj, allow_nan=False), "application/json")
