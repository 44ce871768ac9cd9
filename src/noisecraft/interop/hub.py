"""Hugging Face Hub push and pull for exported diffusers folders (over ``huggingface_hub``).

Network failures and offline mode (HF_HUB_OFFLINE=1) become one-line NoisecraftErrors that say what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from noisecraft.errors import NoisecraftError


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload noisecraft model",
) -> str:
    """Upload an exported folder to the model repo `repo_id` (created if missing); returns the repo URL."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NoisecraftError(f"{folder} is not a folder; export the model first (noisecraft export RUN OUT)")
    if "/" not in repo_id:
        raise NoisecraftError(f"repo_id must look like 'user/name', got {repo_id!r}")
    if _offline():
        raise NoisecraftError("cannot push: HF_HUB_OFFLINE is set; unset it on a machine with network access")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    except Exception as e:
        raise NoisecraftError(
            f"push to {repo_id!r} failed: {_first_line(e)} (check the network and your token: huggingface-cli login)"
        ) from None
    return str(url)


def download_from_hub(repo_id: str, revision: str | None = None, cache_dir: str | None = None) -> Path:
    """snapshot_download of a model repo (from the local cache when offline); returns the local folder."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, repo_type="model"))
    except Exception as e:
        why = "offline (HF_HUB_OFFLINE set) and not in the local cache" if _offline() else _first_line(e)
        raise NoisecraftError(
            f"cannot download {repo_id!r}: {why}; on a connected machine run huggingface-cli download {repo_id} "
            "and pass the local folder instead"
        ) from None


def load_from_hub(repo_id: str, revision: str | None = None, cache_dir: str | None = None):
    """Download a diffusers UNet2DModel pipeline repo and load it: (PreconditionedDenoiser, Schedule)."""
    from noisecraft.interop.diffusers import load_diffusers

    return load_diffusers(download_from_hub(repo_id, revision, cache_dir))
