"""Rendering of the built-in synthetic segmentation data: the images, masks and lab factors.

Each image shows a few textured, coloured shapes (discs, boxes, triangles, blobs) on a noisy,
low-saturation background. Every class has its own hue and texture, so a small network learns
it in well under a minute of CPU, while the shapes, occlusions, noise and odd image sizes still
exercise everything a real pipeline has to get right. Label maps hold the class index, with 255
(void) in a band along object edges, like VOC's ``SegmentationClass`` files.

The **synthetic lab** factors (``fine_structure``, ``context``, ``scale_variation``,
``far_cue``) are defined and checked in ``seglit.data.synthetic_lab``; this module draws them.
With every factor at 0 the output is bit for bit the original dataset.

This module only draws arrays (``render_sample``); ``seglit.data.synthetic`` writes them to
disk in the VOC and Cityscapes layouts and caches them.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from seglit.data.synthetic_lab import (
    _FAR_BAND_WIDTH,
    _FAR_BOX_HEIGHT,
    _FAR_BOX_WIDTH,
    _FAR_GAP,
    lab_params,
)
from seglit.data.synthetic_spec import SyntheticSpec

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "box", "triangle", "blob")
"""Class names of the synthetic dataset; the label value is the index in this tuple."""

# Base colour of each foreground class (well apart in hue; the background is low-saturation).
_CLASS_COLOURS = {
    1: (215, 45, 40),  # disc: red
    2: (40, 190, 60),  # box: green
    3: (45, 85, 225),  # triangle: blue
    4: (230, 195, 35),  # blob: yellow
}

# Background colour family of each cue class (context factor); between the class hues and less
# saturated than them. Every foreground class is a cue class; the image's cue class is the class
# of every ambiguous object in it.
_CUE_COLOURS = {
    1: (70, 150, 150),  # disc: teal
    2: (160, 90, 160),  # box: purple
    3: (180, 130, 80),  # triangle: tan
    4: (115, 150, 80),  # blob: olive
}

_MIN_OBJECT_PX = 4.0  # smallest object size (px) with scale_variation = 1
_MAX_AMBIGUOUS_COVER = 0.6  # ambiguous objects leave at least 40% of the image to the cue
_CUE_PATCH_SIGMA = 6.0  # scale (px) of the smoothed noise that draws the cue / decoy patches


def render_sample(
    rng: np.random.Generator,
    spec: SyntheticSpec = SyntheticSpec(),
    *,
    lab_rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic image and its label map.

    With every lab factor at 0 only ``rng`` is used and the sample is the original one, bit for
    bit. A lab factor draws its own randomness from ``lab_rng`` and leaves the draws of ``rng``
    as they were where it can (image size, background, classes, positions), so a factor changes
    a scene rather than replacing it.

    Lab factors (strength ``p`` in [0, 1], 0 = off; see ``synthetic_lab.LAB_FACTORS``):

    - ``fine_structure``: Poisson(8p) curves 1-3 px wide (a quarter of them background
      "cracks" that show the background through objects), Poisson(12p) specks of 2-8 px in
      the class colour, each object hollow (an outline 1-3 px wide) with probability p/2, and
      object edges moved in and out by smooth noise of std 2p px (ragged edges, small islands
      and holes).
    - ``context``: the image gets a cue class ``k`` (uniform over the 4 foreground classes).
      The background the objects leave visible becomes a patchwork of two colour families
      (``_CUE_COLOURS``: teal, purple, tan, olive): ``k``'s on ``context_cue_share`` of it
      (0.65 by default), a decoy class's on the rest (``_cue_background``). Each object is,
      with probability p, *ambiguous*: a large blob (55-80% of the short side, near the
      centre) with one grey grain texture whose grey level does not depend on the class,
      labelled ``k``. Nothing inside it tells its class; only the background does. An
      ambiguous object that would make ambiguous objects cover more than 60% of the image is
      left out (so the cue stays visible in nearly every crop). Ambiguous objects lie under
      the other objects and are never hollow.
    - ``scale_variation``: object size moves geometrically from the original 25-60% of the
      short side (p = 0) to log-uniform in [4 px, short side] (p = 1), by the same uniform
      draw; the class texture's period scales with the object, and objects are drawn from the
      largest to the smallest so the small ones stay visible.
    - ``far_cue``: each object is, with probability p, replaced by a *far-cue box*: a grey
      box (the ``context`` factor's grain, 8-16 px wide, 20-32 px tall) whose class only a
      *cue band* tells: 36 px wide, as tall as the box, in the same rows, in the class's
      colour family (``_CUE_COLOURS``), ``cue_distance`` px to the box's left or right
      (uniform), labelled background. The boxes of one image have different classes and lie
      in separate rows (at least 4 px apart), so a pixel's own rows hold only its own box's
      band; a box whose rows or span (box, gap, band) do not fit the image is left out.
      They are drawn over the other objects.

    Void band: with any lab factor on, structures narrower than ``2 * void_width + 3`` px (the
    pixels that an opening with a square of that side removes from their class) get no band
    inside them, so a 1-3 px line keeps its class; the band still lies on the wider
    neighbour's side, and where two such structures of different classes meet, both sides
    within ``void_width`` of each other become 255. Labels of different classes therefore
    never touch when ``void_width >= 1``.

    Args:
        rng: source of randomness (the sample is a pure function of its state).
        spec: the image settings (``min_size``, ``max_size``, ``max_objects``, ``void_width``)
            and lab settings; ``num_train``, ``num_val`` and ``seed`` are not read (``rng``
            holds the randomness).
        lab_rng: randomness of the lab factors; ``None`` seeds one from ``rng`` (which then
            no longer gives the factor-0 scene).

    Returns:
        ``(image, label)``: uint8 arrays of shapes (H, W, 3) and (H, W); label values are class
        indices into ``SYNTHETIC_CLASSES`` or 255.
    """
    lab_on = bool(lab_params(spec))
    if lab_on and lab_rng is None:
        lab_rng = np.random.default_rng(int(rng.integers(2**63)))
    lab = lab_rng
    height, width = (int(v) for v in rng.integers(spec.min_size, spec.max_size + 1, size=2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _background(rng, height, width, yy, xx)
    label = np.zeros((height, width), dtype=np.uint8)
    cue = 0
    if spec.context > 0:
        cue = int(lab.integers(1, len(SYNTHETIC_CLASSES)))
        ambiguous_cover = np.zeros((height, width), dtype=bool)
    background = image.copy() if spec.fine_structure > 0 else None

    num_objects = int(rng.integers(1, spec.max_objects + 1))
    short = min(height, width)
    objects = []  # (drawing order key, shape, texture, class index)
    far_boxes = 0  # objects replaced by far-cue boxes
    for _ in range(num_objects):
        class_index = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        size = float(rng.uniform(0.25, 0.6)) * short
        cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
        scale = 1.0
        if spec.scale_variation > 0:
            varied = _vary_size(size, short, spec.scale_variation)
            size, scale = varied, varied / size
        shape = _shape_mask(rng, class_index, height, width, cy, cx, size)
        if not shape.any():
            continue
        texture = _texture(rng, class_index, yy, xx, cy, cx, scale)
        ambiguous = False
        if spec.context > 0 and lab.random() < spec.context:
            blob = _ambiguous_shape(lab, height, width)
            if (ambiguous_cover | blob).mean() > _MAX_AMBIGUOUS_COVER:
                continue
            ambiguous_cover |= blob
            shape, texture, class_index = blob, _ambiguous_texture(lab, height, width), cue
            ambiguous = True
        if spec.far_cue > 0 and not ambiguous and lab.random() < spec.far_cue:
            far_boxes += 1
            continue
        if spec.fine_structure > 0:
            shape = _ragged(lab, shape, 2.0 * spec.fine_structure)
            if not ambiguous and lab.random() < spec.fine_structure / 2:
                shape = shape & ~ndimage.binary_erosion(shape, iterations=int(lab.integers(1, 4)))
        order = (not ambiguous, -size if spec.scale_variation > 0 else 0.0)
        objects.append((order, shape, texture, class_index))
    if lab_on:
        objects.sort(key=lambda obj: obj[0])  # stable: ambiguous first, then large to small
    # the cue patchwork, balanced on the background the objects leave visible
    if spec.context > 0:
        covered = np.zeros((height, width), dtype=bool)
        for _, shape, _, _ in objects:
            covered |= shape
        image = _cue_background(lab, image, cue, ~covered, spec.context_cue_share)
        if background is not None:
            background = image.copy()
    for _, shape, texture, class_index in objects:
        image[shape] = texture[shape]
        label[shape] = class_index
    if far_boxes:
        _far_cue_boxes(lab, image, label, far_boxes, spec.cue_distance)
    if spec.fine_structure > 0:
        _fine_structures(lab, image, label, background, spec.fine_structure, short)

    image += rng.normal(0.0, 8.0, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if spec.void_width > 0:
        size = 2 * spec.void_width + 1
        edge = ndimage.grey_dilation(label, size=size) != ndimage.grey_erosion(label, size=size)
        if lab_on:
            edge = _spare_thin(label, edge, spec.void_width)
        label[edge] = 255
    return image, label


def _vary_size(size: float, short: int, strength: float) -> float:
    """Object size under ``scale_variation``: the original size (25-60% of ``short``, from a
    uniform draw) moved geometrically towards the log-uniform size in [4 px, ``short``] that
    the same draw gives."""
    quantile = min(max((size / short - 0.25) / 0.35, 0.0), 1.0)
    wide = _MIN_OBJECT_PX * (short / _MIN_OBJECT_PX) ** quantile
    return size ** (1.0 - strength) * wide**strength


def _cue_background(
    lab: np.random.Generator, image: np.ndarray, cue: int, visible: np.ndarray, share: float
) -> np.ndarray:
    """The background recoloured (brightness kept) as a patchwork of two colour families: the
    cue class's on ``share`` of the ``visible`` pixels, a decoy class's (another
    foreground class, uniform) on the rest, in patches of smoothed noise of scale
    ``_CUE_PATCH_SIGMA`` px. Only the share over the whole image tells the two apart."""
    height, width = visible.shape
    decoys = [c for c in _CUE_COLOURS if c != cue]
    decoy = decoys[int(lab.integers(len(decoys)))]
    field = lab.standard_normal((height, width)).astype(np.float32)
    field = ndimage.gaussian_filter(field, _CUE_PATCH_SIGMA)
    pool = field[visible] if visible.any() else field.ravel()
    if share >= 1.0:  # every pixel; the quantile rule would leave the lowest one the decoy's
        family = np.full((height, width), cue)
    else:
        family = np.where(field > np.quantile(pool, 1.0 - share), cue, decoy)
    tints = np.zeros((len(SYNTHETIC_CLASSES), 3), dtype=np.float32)
    for c in (cue, decoy):
        colour = np.asarray(_CUE_COLOURS[c], dtype=np.float32) + lab.uniform(-10, 10, 3)
        tints[c] = colour / colour.mean()
    return image.mean(axis=2, keepdims=True) * tints[family]


def _far_cue_boxes(
    lab: np.random.Generator, image: np.ndarray, label: np.ndarray, count: int, distance: int
) -> None:
    """Draw ``count`` far-cue boxes (grey, one class each) and their cue bands into ``image``
    and ``label`` (in place): see ``render_sample``."""
    height, width = label.shape
    classes = lab.permutation(np.arange(1, len(SYNTHETIC_CLASSES)))[:count]
    heights = lab.integers(_FAR_BOX_HEIGHT[0], _FAR_BOX_HEIGHT[1], size=len(classes), endpoint=True)
    widths = lab.integers(_FAR_BOX_WIDTH[0], _FAR_BOX_WIDTH[1], size=len(classes), endpoint=True)
    # the boxes whose rows fit, top to bottom, the spare rows shared out among the gaps
    kept = int(np.sum(np.cumsum(heights + _FAR_GAP) + _FAR_GAP <= height))
    spare = height - int(np.sum(heights[:kept])) - (kept + 1) * _FAR_GAP
    gaps = _FAR_GAP + np.floor(spare * lab.dirichlet(np.ones(kept + 1))).astype(int)
    top = 0
    for k in range(kept):
        top += int(gaps[k])
        rows = slice(top, top + int(heights[k]))
        top += int(heights[k])
        box_width, class_index = int(widths[k]), int(classes[k])
        span = box_width + distance + _FAR_BAND_WIDTH
        band_left = lab.random() < 0.5
        texture = _ambiguous_texture(lab, height, width)
        colour = np.asarray(_CUE_COLOURS[class_index], dtype=np.float32)
        colour = colour + lab.uniform(-10, 10, 3).astype(np.float32)
        if span > width - 2 * _FAR_GAP:
            continue
        start = int(lab.integers(_FAR_GAP, width - _FAR_GAP - span, endpoint=True))
        box_start = start + _FAR_BAND_WIDTH + distance if band_left else start
        band_start = start if band_left else start + box_width + distance
        box = (rows, slice(box_start, box_start + box_width))
        band = (rows, slice(band_start, band_start + _FAR_BAND_WIDTH))
        image[box] = texture[box]
        label[box] = class_index
        image[band] = colour
        label[band] = 0


def _ambiguous_shape(lab: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A large blob near the image centre: the one shape family of ambiguous objects."""
    size = lab.uniform(0.55, 0.8) * min(height, width)
    cy, cx = lab.uniform(0.3, 0.7) * height, lab.uniform(0.3, 0.7) * width
    return _shape_mask(lab, 4, height, width, cy, cx, size)


def _ambiguous_texture(lab: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Grey grain, the same for every class: a random level modulated by smoothed noise."""
    level = lab.uniform(80, 190)
    grain = ndimage.gaussian_filter(lab.standard_normal((height, width)).astype(np.float32), 1.5)
    grey = level * (1.0 + 0.12 * grain / (grain.std() + 1e-6))
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def _ragged(lab: np.random.Generator, shape: np.ndarray, amplitude: float) -> np.ndarray:
    """``shape`` with its edge moved in and out by smooth noise of std ``amplitude`` px."""
    if not shape.any():
        return shape
    margin = int(np.ceil(4 * amplitude)) + 2
    rows, cols = np.nonzero(shape.any(axis=1))[0], np.nonzero(shape.any(axis=0))[0]
    window = (
        slice(max(rows[0] - margin, 0), rows[-1] + margin + 1),
        slice(max(cols[0] - margin, 0), cols[-1] + margin + 1),
    )
    crop = shape[window]
    noise = ndimage.gaussian_filter(lab.standard_normal(crop.shape).astype(np.float32), 1.0)
    noise *= amplitude / (noise.std() + 1e-6)
    depth = ndimage.distance_transform_edt(crop) - ndimage.distance_transform_edt(~crop)
    out = np.zeros_like(shape)
    out[window] = depth + noise > 0
    return out


def _fine_structures(
    lab: np.random.Generator,
    image: np.ndarray,
    label: np.ndarray,
    background: np.ndarray,
    strength: float,
    short: int,
) -> None:
    """Paint thin curves, cracks and specks into ``image`` / ``label`` (in place).

    Every structure is drawn on one canvas with its own index (later ones on top); the
    index then looks up the structure's class and colour (a crack shows the background).
    """
    height, width = label.shape
    num_curves = int(lab.poisson(8.0 * strength))
    num_specks = int(lab.poisson(12.0 * strength))
    num = min(num_curves + num_specks, 254)
    classes = np.zeros(num + 1, dtype=np.uint8)
    colours = np.zeros((num + 1, 3), dtype=np.float32)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for index in range(1, num + 1):
        if index <= num_curves:  # a curve: a random walk of 3-6 steps, 1-3 px wide
            crack = lab.random() < 0.25
            class_index = 0 if crack else int(lab.integers(1, len(SYNTHETIC_CLASSES)))
            y, x, angle = lab.uniform(0, height), lab.uniform(0, width), lab.uniform(0, 2 * np.pi)
            points = [(x, y)]
            for _ in range(int(lab.integers(3, 7))):
                angle += lab.normal(0.0, 0.6)
                step = lab.uniform(0.08, 0.25) * short
                x, y = x + step * np.cos(angle), y + step * np.sin(angle)
                points.append((x, y))
            draw.line(points, fill=index, width=int(lab.integers(1, 4)), joint="curve")
        else:  # a speck: a disc or square of 2-8 px
            class_index = int(lab.integers(1, len(SYNTHETIC_CLASSES)))
            r = np.exp(lab.uniform(np.log(2.0), np.log(8.0))) / 2
            y, x = lab.uniform(0, height), lab.uniform(0, width)
            shape = draw.ellipse if lab.random() < 0.5 else draw.rectangle
            shape([x - r, y - r, x + r, y + r], fill=index)
        classes[index] = class_index
        if class_index:
            colours[index] = np.asarray(_CLASS_COLOURS[class_index]) + lab.uniform(-20, 20, 3)
    drawn = np.asarray(canvas)
    mask = drawn > 0
    which = drawn[mask]
    image[mask] = np.where(classes[which, None] == 0, background[mask], colours[which])
    label[mask] = classes[which]


def _spare_thin(label: np.ndarray, edge: np.ndarray, void_width: int) -> np.ndarray:
    """The void band ``edge`` without the inside of structures narrower than
    ``2 * void_width + 3`` px, plus the pixels where two such structures of different classes
    come within ``void_width`` of each other.

    A pixel is in a narrow structure when no ``(2 * void_width + 3)``-square inside the image
    and of one class covers it: the pixels a binary opening with that square removes from
    their class (computed for all classes at once with separable min/max filters).
    """
    size = 2 * void_width + 1
    labels = label.astype(np.int16)
    low = ndimage.minimum_filter(labels, size=size + 2, mode="constant", cval=-1)
    high = ndimage.maximum_filter(labels, size=size + 2, mode="constant", cval=-1)
    thin = ~ndimage.maximum_filter(low == high, size=size + 2, mode="constant", cval=0)
    shifted = labels + 1
    high = ndimage.grey_dilation(np.where(thin, shifted, 0), size=size)
    low = ndimage.grey_erosion(np.where(thin, shifted, 256), size=size)
    clash = thin & ((high > shifted) | (low < shifted))
    return (edge & ~thin) | clash


def _background(
    rng: np.random.Generator, height: int, width: int, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """A low-saturation background: grey level, faint tint, linear gradient and soft lines."""
    level = rng.uniform(70, 190)
    tint = rng.uniform(-12, 12, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) * rng.uniform(-40, 40)
    period = rng.uniform(6, 20)
    lines = 10.0 * np.sin(2 * np.pi * (xx * np.cos(angle + 1) + yy * np.sin(angle + 1)) / period)
    grey = level + ramp + lines
    return grey[..., None] + tint[None, None, :].astype(np.float32)


def _shape_mask(
    rng: np.random.Generator,
    class_index: int,
    height: int,
    width: int,
    cy: float,
    cx: float,
    size: float,
) -> np.ndarray:
    """Boolean mask of one shape: disc, box, triangle or blob according to the class."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    r = size / 2
    if class_index == 1:  # disc (slightly elliptic)
        ry = r * rng.uniform(0.8, 1.2)
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=1)
    elif class_index == 2:  # box (axis-aligned, random aspect)
        ry = r * rng.uniform(0.6, 1.4)
        draw.rectangle([cx - r, cy - ry, cx + r, cy + ry], fill=1)
    elif class_index == 3:  # triangle (random rotation)
        theta = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        points = [(cx + 1.2 * r * np.cos(t), cy + 1.2 * r * np.sin(t)) for t in theta]
        draw.polygon(points, fill=1)
    else:  # blob: a star-shaped polygon with a smooth random radius
        n = 16
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radius = r * (1 + 0.3 * np.sin(theta * rng.integers(2, 4) + rng.uniform(0, 6)))
        radius *= rng.uniform(0.8, 1.1, size=n)
        points = [(cx + q * np.cos(t), cy + q * np.sin(t)) for q, t in zip(radius, theta)]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _texture(
    rng: np.random.Generator,
    class_index: int,
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
    scale: float = 1.0,
) -> np.ndarray:
    """The class's colour (jittered per object) modulated by the class's own texture, whose
    period is multiplied by ``scale`` (kept within 2.5-48 px when ``scale`` is not 1)."""
    colour = np.array(_CLASS_COLOURS[class_index], dtype=np.float32) + rng.uniform(-20, 20, 3)
    period = rng.uniform(5, 9)
    if scale != 1.0:
        period = float(np.clip(period * scale, 2.5, 48.0))
    if class_index == 1:  # concentric rings
        pattern = np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period)
    elif class_index == 2:  # stripes
        pattern = np.sign(np.sin(2 * np.pi * (xx + yy) / period))
    elif class_index == 3:  # checkerboard
        pattern = np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
    else:  # spots
        pattern = np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    shade = 1.0 + 0.15 * pattern.astype(np.float32)
    return np.clip(colour[None, None, :] * shade[..., None], 0, 255).astype(np.float32)
