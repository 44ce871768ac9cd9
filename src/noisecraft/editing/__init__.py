"""Editing real images with any denoiser and any sampler: img2img (SDEdit), inpainting/outpainting (replace and
RePaint), inversion-based edits (exact DDIM inversion, class swap, interpolation), and image/mask I/O."""

from noisecraft.editing.edits import interpolate, slerp, swap_class
from noisecraft.editing.inpaint import KnownRegionDenoiser, inpaint, latent_mask, repaint_schedule
from noisecraft.editing.io import load_image, load_mask, rect_mask, save_comparison, save_image
from noisecraft.editing.sdedit import img2img, strength_sigmas
from noisecraft.sampling.inversion import invert, reconstruct, regenerate  # the one inversion API, re-exported

__all__ = [
    "KnownRegionDenoiser",
    "img2img",
    "inpaint",
    "interpolate",
    "invert",
    "latent_mask",
    "load_image",
    "load_mask",
    "reconstruct",
    "rect_mask",
    "regenerate",
    "repaint_schedule",
    "save_comparison",
    "save_image",
    "slerp",
    "strength_sigmas",
    "swap_class",
]
