"""`gan compare RUN... --grids [--step S]`: the GAN tab's view as one PNG, for papers and machines without a
browser. Each run's grid at its logged step nearest S, side by side (four to a row), labelled with the run, that
step and its primary metric there (`view`: the same rules as the tab). The grids are the very PNGs the run logged
to TensorBoard, read from its event files."""
from __future__ import annotations

import io
from pathlib import Path

from gan.dashboard import view
from gan.errors import GanError
from gan.events import has_events
from gan.metrics import protocol
from gan.runs import short_labels

PER_ROW = 4
PAD, BAR = 12, 4  # px around each grid; the run's colour bar above it (the tab's colours)
COLORS = ["#ff7043", "#0077bb", "#009988", "#ee3377", "#33bbee", "#cc3311", "#997700", "#332288", "#117733",
          "#888888"]  # as static/index.js


def read_run(run: Path, tag: str) -> tuple[dict, str | None, list]:
    """({step: PNG bytes} of `tag`, the primary metric's tag, its (step, value) points) from a run's events; a step
    logged twice (a resume) keeps its later write, as TensorBoard shows it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0, "tensors": 1, "histograms": 1,
                                                   "audio": 1, "compressedHistograms": 1})
    ea.Reload()
    tags = ea.Tags()
    grids = {e.step: e.encoded_image_string for e in ea.Images(tag)} if tag in tags.get("images", []) else {}
    primary = protocol.primary(tags.get("scalars", [])).tag
    points = sorted({e.step: e.value for e in ea.Scalars(primary)}.items()) if primary else []
    return grids, primary, points


def default_step(grids: list[dict]) -> int:
    """The latest step every run has reached: the smallest of their last grid steps."""
    return min(max(g) for g in grids)


def sheet(runs: list[Path], step: int | None = None, tag: str = view.FAKE):
    """The PIL image of the runs' `tag` grids at `step` (default: default_step), the step used, and where each
    run's grid sits in it (its top-left corner)."""
    from PIL import Image, ImageDraw, ImageFont

    if not runs:
        raise GanError("nothing to show: give run folders, --exp NAME or --sweep DIR")
    if step is not None and step < 0:
        raise GanError(f"--step {step}: expected a step ≥ 0")
    read = []
    for r in runs:
        grids, primary, points = read_run(r, tag) if has_events(r) else ({}, None, [])
        if not grids:
            why = " (not a conditional run?)" if tag.endswith("per_class") else ""
            raise GanError(f"run '{r}' has no {tag} grid yet{why}")
        read.append((grids, primary, points))
    step = default_step([g for g, _, _ in read]) if step is None else step
    _, labels = short_labels(runs)
    font, bold = ImageFont.load_default(size=14), ImageFont.load_default(size=15)
    panels = []
    for label, (grids, primary, points) in zip(labels, read):
        s = view.nearest(sorted(grids), step)
        img = Image.open(io.BytesIO(grids[s])).convert("RGB")
        lines = [(label, bold), (f"step {s}" + (f" (nearest to {step})" if s != step else ""), font),
                 (view.point_label(primary, points, s), font)]
        panels.append((img, lines))
    cell_w = max(max(i.width for i, _ in panels), 220)
    line_h = 20
    head_h = BAR + 6 + line_h * 3 + 4
    cell_h = head_h + max(i.height for i, _ in panels)
    cols = min(PER_ROW, len(panels))
    rows = -(-len(panels) // cols)
    title_h = 30
    title = f"{tag} ({view.GRID_NAMES.get(tag, 'grid')}) at step {step}: each run's logged grid nearest to it"
    width = max(PAD + cols * (cell_w + PAD), 2 * PAD + int(bold.getlength(title)))
    out = Image.new("RGB", (width, title_h + rows * (cell_h + PAD) + PAD), "white")
    draw = ImageDraw.Draw(out)
    draw.text((PAD, 8), title, fill="#212121", font=bold)
    corners = []
    for k, (img, lines) in enumerate(panels):
        x, y = PAD + (k % cols) * (cell_w + PAD), title_h + (k // cols) * (cell_h + PAD)
        draw.rectangle([x, y, x + cell_w - 1, y + BAR - 1], fill=COLORS[k % len(COLORS)])
        for j, (text, f) in enumerate(lines):
            draw.text((x, y + BAR + 4 + j * line_h), fit(draw, text, f, cell_w), fill="#212121" if j != 1
                      else "#616161", font=f)
        out.paste(img, (x, y + head_h))
        corners.append((x, y + head_h))
    return out, step, corners


def fit(draw, text: str, font, width: int) -> str:
    """`text`, its start cut to '…' until it fits `width` px (run names end with what tells them apart)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text, font=font) > width:
        text = text[1:]
    return "…" + text


def write(runs: list[Path], step: int | None = None, tag: str = view.FAKE, out: Path | None = None) -> Path:
    """The sheet as a PNG at `out`, by default `grids[-<kind>]-step<S>.png` in the first run's folder; never over
    an existing file (a taken name gets the first free `-N`). Returns the path written."""
    from gan.compare import write_new

    img, step, _ = sheet(runs, step, tag)
    kind = "" if tag == view.FAKE else "-" + tag.split("/")[-1].replace("fake_", "")
    out = Path(out) if out is not None else Path(runs[0]) / f"grids{kind}-step{step}.png"
    return write_new(out, lambda f: img.save(f, format="PNG", optimize=True))
