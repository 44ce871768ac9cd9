"""Old home of ``generate`` and the sample writers, kept only so that branches written against it still
import during the merge; new code imports ``noisecraft.sampling.generate``, ``noisecraft.data.io`` and
``noisecraft.evaluation.plots.save_points``. Remove once nothing imports it."""

from noisecraft.data.io import save_grid, save_images, to_uint8, upscale_for
from noisecraft.evaluation.plots import save_points
from noisecraft.sampling.generate import generate

__all__ = ["generate", "save_grid", "save_images", "save_points", "to_uint8", "upscale_for"]
