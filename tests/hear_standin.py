"""A tiny HEAR-compliant module for the runner tests: log band energies, 16 kHz,
no weights. Fast enough that the real heareval embedding runner takes seconds."""
import torch

HOP = 800          # 50 ms at 16 kHz
BANDS = 16


class StandIn(torch.nn.Module):
    sample_rate = 16000
    scene_embedding_size = BANDS
    timestamp_embedding_size = BANDS


def load_model(model_file_path: str = "", **options) -> StandIn:
    return StandIn()


def get_timestamp_embeddings(audio: torch.Tensor, model: StandIn):
    n_sounds, n_samples = audio.shape
    frames = max(1, n_samples // HOP)
    x = torch.nn.functional.pad(audio, (0, frames * HOP - n_samples))[:, : frames * HOP]
    spectrum = torch.fft.rfft(x.reshape(n_sounds, frames, HOP)).abs()        # (B, T, 401)
    bands = spectrum[..., : BANDS * 25].reshape(n_sounds, frames, BANDS, 25).mean(-1)
    embeddings = torch.log1p(bands).float()                                   # (B, T, 16)
    centres = (torch.arange(frames, dtype=torch.float32) + 0.5) * (HOP / 16.0)
    return embeddings, centres.expand(n_sounds, frames).contiguous()


def get_scene_embeddings(audio: torch.Tensor, model: StandIn) -> torch.Tensor:
    return get_timestamp_embeddings(audio, model)[0].mean(1)
