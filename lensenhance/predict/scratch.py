"""Working arrays and whole-image passes in bounded memory, whatever the image size.

An image of more than `SCRATCH_PIXELS` pixels keeps its per-pixel working arrays (the
normalised image, its sigma, its masks) in temporary files mapped into memory
(`scratch_array`), and every pass over the whole image runs block by block
(`iter_blocks`, with a halo where the pass looks at neighbours), handing each block's
pages back to the kernel when it is done (`release_mapped_pages`): the resident memory
is then a few blocks, as `predict_images` keeps it a few tiles. Groups of pixels (bad
pixels, bright sources) are found block by block too (`group_boxes`). An image of at
most one block is handled in one piece.
"""

from __future__ import annotations

import math
import tempfile

import numpy as np

__all__ = ["SCRATCH_PIXELS", "BLOCK", "scratch_array", "iter_blocks", "subgrid", "group_boxes",
           "release_mapped_pages", "release_heap"]

#: Working arrays of larger images live in temporary files (2048^2: 16 MB per float32
#: array in memory below it).
SCRATCH_PIXELS = 1 << 22
#: Side of the blocks of whole-image passes: a cutout or a 1024^2 image is one block.
BLOCK = 1024


def scratch_array(shape, dtype, *, fill=0):
    """A working array: in memory when small, else a map of an unnamed temporary file.

    The file (in `tempfile.gettempdir`, so ``TMPDIR`` chooses the disk) is deleted when
    the array is: nothing is left behind by a killed run.
    """
    shape = tuple(int(n) for n in shape)
    if math.prod(shape) <= SCRATCH_PIXELS:
        return np.full(shape, fill, dtype)
    with tempfile.TemporaryFile(prefix="lensenhance-") as handle:
        array = np.memmap(handle, dtype=dtype, mode="w+", shape=shape)  # a new file is 0
    if fill:
        for rows in range(0, shape[0], BLOCK):
            array[rows:rows + BLOCK] = fill
            release_mapped_pages(array)
    return array


def iter_blocks(shape, *, halo=0, block=None):
    """Blocks of a 2-D ``shape``: ``(outer, inner, local)`` slice pairs per block.

    ``inner`` is the block in the image, ``outer`` the block grown by ``halo`` pixels
    (clipped at the image's edges) and ``local`` the block inside ``outer``: a pass that
    reads ``outer`` and keeps ``local`` of its result equals the whole-image pass when
    its reach is within ``halo``.
    """
    block = BLOCK if block is None else int(block)
    ny, nx = shape
    for y0 in range(0, ny, block):
        for x0 in range(0, nx, block):
            y1, x1 = min(y0 + block, ny), min(x0 + block, nx)
            oy0, ox0 = max(0, y0 - halo), max(0, x0 - halo)
            oy1, ox1 = min(ny, y1 + halo), min(nx, x1 + halo)
            yield ((slice(oy0, oy1), slice(ox0, ox1)), (slice(y0, y1), slice(x0, x1)),
                   (slice(y0 - oy0, y1 - oy0), slice(x0 - ox0, x1 - ox0)))


def subgrid(array, step):
    """``array[::step, ::step]``; from a memory map, a copy read a block of rows at a time.

    Every ``step``-th row of a map would otherwise stay resident with its neighbours (the
    kernel maps a file's pages in runs): the whole file, for a small ``step``.
    """
    if _shared_map(array) is None:
        return array[::step, ::step]
    rows = max(1, BLOCK // step) * step
    out = np.empty(array[::step, ::step].shape, array.dtype)
    for start in range(0, array.shape[0], rows):
        out[start // step:(start + rows) // step] = array[start:start + rows:step, ::step]
        release_mapped_pages(array)
    return out


def group_boxes(mask, *, connectivity=1, block=None):
    """The connected groups of ``mask``: ``[(box, region)]``, found block by block.

    ``box`` is a pair of slices (the group's bounding box) and ``region`` the group's
    pixels in it (bool), as `scipy.ndimage.label` and `~scipy.ndimage.find_objects`
    give them, in their order. A group cut by a block's edge is joined again with the
    groups beside it across that edge (two groups that only nearly touch there may be
    joined too: the union is still a set of whole groups, each pixel in exactly one).

    Parameters
    ----------
    mask : numpy.ndarray of bool, 2-D
    connectivity : {1, 2}
        1: edge neighbours; 2: corners too.
    block : int, optional
        Default `BLOCK`.
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(2, connectivity)
    shape = mask.shape
    groups, edge = [], []
    for _, inner, _ in iter_blocks(shape, block=block):
        sub = np.asarray(mask[inner], bool)
        release_mapped_pages(mask)
        if not sub.any():
            continue
        labels, _ = ndimage.label(sub, structure)
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            region = labels[box] == index
            box = tuple(slice(b.start + o.start, b.stop + o.start) for b, o in zip(box, inner))
            cut = any((b.start == o.start > 0) or (b.stop == o.stop < n)
                      for b, o, n in zip(box, inner, shape))
            (edge if cut else groups).append((box, region))
    groups += _join_across_edges(edge)
    # scipy's order (the raster order of each group's first pixel): a pass that changes
    # the image group after group (filling) sees what it sees in one block
    return sorted(groups, key=lambda g: (g[0][0].start, g[0][1].start + int(g[1][0].argmax())))


def _join_across_edges(pieces):
    """Join pieces whose boxes touch (one pixel apart, corners included)."""
    parent = list(range(len(pieces)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, (a, _) in enumerate(pieces):
        for j in range(i + 1, len(pieces)):
            b = pieces[j][0]
            if all(p.start <= q.stop and q.start <= p.stop for p, q in zip(a, b)):
                parent[root(j)] = root(i)
    joined = {}
    for i in range(len(pieces)):
        joined.setdefault(root(i), []).append(pieces[i])
    groups = []
    for members in joined.values():
        box = tuple(slice(min(m[0][a].start for m in members),
                          max(m[0][a].stop for m in members)) for a in (0, 1))
        region = np.zeros(tuple(s.stop - s.start for s in box), bool)
        for piece_box, piece in members:
            region[tuple(slice(p.start - b.start, p.stop - b.start)
                         for p, b in zip(piece_box, box))] |= piece
        groups.append((box, region))
    return groups


def release_mapped_pages(*arrays):
    """Drop the pages of memory-mapped arrays from this process's resident set.

    An output written through `numpy.memmap` (`lensenhance.io.create_image`) or a
    `scratch_array` would otherwise stay resident page by page until the file is closed:
    256 MB for a 8192^2 float32 image. ``MADV_DONTNEED`` on a shared file mapping keeps
    what was written (the kernel's page cache holds it until it reaches the file; a later
    access reads it back), so memory stays bounded by the blocks in flight. A read-only
    input map (a FITS file read with ``memmap=True``: its arrays are not writeable) is
    released too: its pages are read again from the file. Other arrays (in memory, or
    private copy-on-write maps, which would lose their changes) are left alone.
    """
    import mmap

    advice = getattr(mmap, "MADV_DONTNEED", None)
    if advice is None:
        return
    for array in arrays:
        buffer = _shared_map(array)
        if buffer is None:
            continue
        try:
            buffer.madvise(advice)
        except (OSError, ValueError):  # a closed map, or a platform without madvise
            pass


def _shared_map(array):
    """The `mmap.mmap` behind ``array`` when dropping its pages loses nothing, else None."""
    import mmap

    if not isinstance(array, np.ndarray):
        return None
    if isinstance(array, np.memmap) and array.mode in ("r+", "w+", "r"):
        return getattr(array, "_mmap", None)
    if array.flags.writeable:
        return None  # a writable view of a private map may hold changes
    base = array
    while isinstance(base, np.ndarray):
        if isinstance(base, np.memmap):
            return base._mmap if base.mode in ("r+", "w+", "r") else None
        base = base.base
    return base if isinstance(base, mmap.mmap) and _read_only(base) else None


def _read_only(buffer):
    """Whether a map refuses writes (``ACCESS_READ``): its pages are the file's."""
    try:
        with memoryview(buffer) as view:
            return view.readonly
    except (TypeError, ValueError):  # closed
        return False


def release_heap():
    """Give freed heap pages back to the system (``malloc_trim``).

    glibc keeps them after temporaries of varying shapes (tiles, blocks, the statistics
    of the normalisation), and the resident memory would creep up block after block.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            import ctypes

            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None
