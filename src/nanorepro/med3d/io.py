"""Reading real volumes: a NIfTI file (nibabel) resampled to the model's grid, with clear errors.

The array is read in its stored voxel order (x, y, z) and sliced along z (axial for a
canonical RAS file), intensities are windowed to the 1st–99th percentile and mapped to [0, 1],
and the volume is resampled (trilinear) to ``slices × size × size``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nanorepro.common.errors import UserError


def load_nifti(path: str | Path, slices: int, size: int) -> np.ndarray:
    """(slices, size, size) float32 in [0, 1] from a .nii / .nii.gz file."""
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except (ImageFileError, OSError, EOFError, ValueError) as err:
        raise UserError(f"{path}: not a readable NIfTI volume ({err})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        data = data[..., 0]  # first frame of a time series
    if data.ndim != 3 or min(data.shape) < 1:
        raise UserError(f"{path}: expected a 3-D volume, got an array of shape {data.shape}")
    if not np.isfinite(data).all():
        raise UserError(f"{path}: the volume contains NaN or infinite values")
    low, high = np.percentile(data, [1, 99])
    if high <= low:
        raise UserError(f"{path}: the volume is constant (nothing to see)")
    data = np.clip((data - low) / (high - low), 0, 1).astype(np.float32)
    volume = torch.from_numpy(np.ascontiguousarray(data.transpose(2, 1, 0)))[None, None]  # (1, 1, z, y, x)
    return F.interpolate(volume, size=(slices, size, size), mode="trilinear", align_corners=False)[0, 0].numpy()
