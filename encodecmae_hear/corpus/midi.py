"""Seeded MIDI: a tiny Standard MIDI File writer, procedural pieces for the corpus and
fluidsynth rendering.

Notes are (start_s, duration_s, channel, pitch, velocity); a `program` per channel
picks the General MIDI instrument (channel 9 is the drum kit). Rendering plays the
file through a soundfont with the `fluidsynth` command (Debian package fluidsynth).
"""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

TICKS_PER_BEAT = 480  # at the fixed tempo of 120 bpm: 960 ticks per second
TICKS_PER_SECOND = 960

# General MIDI program groups (first program, name); 8 programs each
GM_FAMILIES = {"piano": 0, "chromatic_percussion": 8, "organ": 16, "guitar": 24, "bass": 32,
               "strings": 40, "ensemble": 48, "brass": 56, "reed": 64, "pipe": 72,
               "synth_lead": 80, "synth_pad": 88}
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10),
          "dorian": (0, 2, 3, 5, 7, 9, 10), "pentatonic": (0, 2, 4, 7, 9)}


def _varlen(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_bytes(notes, programs: dict[int, int]) -> bytes:
    """Type-0 Standard MIDI File with the notes (see module doc) at 120 bpm."""
    events = [(0, 0, bytes([0xFF, 0x51, 0x03]) + (500000).to_bytes(3, "big"))]  # tempo
    for channel, program in sorted(programs.items()):
        events.append((0, 1, bytes([0xC0 | channel, program & 0x7F])))
    for start, duration, channel, pitch, velocity in notes:
        on = int(round(start * TICKS_PER_SECOND))
        off = max(on + 1, int(round((start + duration) * TICKS_PER_SECOND)))
        events.append((on, 3, bytes([0x90 | channel, pitch & 0x7F, max(1, min(127, velocity))])))
        events.append((off, 2, bytes([0x80 | channel, pitch & 0x7F, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track, now = bytearray(), 0
    for tick, _, data in events:
        track += _varlen(tick - now) + data
        now = tick
    track += _varlen(TICKS_PER_SECOND) + bytes([0xFF, 0x2F, 0x00])  # 1 s tail, end of track
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def procedural_piece(seed: int, seconds: float = 60.0):
    """A seeded piece: chord progression (pad/keys), bass line, melody, optional drums.
    -> (notes, programs)."""
    rng = np.random.default_rng(seed)
    beat = 60.0 / rng.uniform(70, 160)
    root = 48 + int(rng.integers(12))
    scale = SCALES[list(SCALES)[int(rng.integers(len(SCALES)))]]
    degree = lambda d: root + 12 * (d // len(scale)) + scale[d % len(scale)]  # noqa: E731
    programs = {0: int(rng.integers(0, 96)), 1: int(rng.integers(32, 40)),
                2: int(rng.choice([0, 4, 16, 24, 40, 48, 52, 88, 89]))}
    drums = rng.random() < 0.6
    if drums:
        programs[9] = 0
    notes, t, bar = [], 0.0, 0
    progression = [int(d) for d in rng.choice([0, 3, 4, 5, 1], size=4)]
    while t < seconds:
        chord = progression[bar % 4]
        for d in (0, 2, 4):  # chord held for the bar
            notes.append((t, 4 * beat * 0.95, 2, degree(chord + d) + 12, int(rng.integers(50, 80))))
        for b in range(4):  # bass on beats
            notes.append((t + b * beat, beat * 0.9, 1, degree(chord) - 12, int(rng.integers(70, 100))))
        pos, step = 0.0, int(rng.integers(7)) + 7
        while pos < 4 * beat:  # melody: a random walk on the scale in 8ths and quarters
            dur = beat * float(rng.choice([0.5, 0.5, 1.0, 1.5]))
            step = int(np.clip(step + rng.integers(-2, 3), 4, 18))
            if rng.random() < 0.85:
                notes.append((t + pos, dur * 0.9, 0, degree(step) + 12, int(rng.integers(60, 110))))
            pos += dur
        if drums:
            for b in range(8):
                kit = (36 if b % 4 == 0 else 38) if b % 2 == 0 else 42
                notes.append((t + b * beat / 2, 0.1, 9, kit, int(rng.integers(60, 110))))
        t += 4 * beat
        bar += 1
    return [n for n in notes if n[0] < seconds], programs


def render(notes, programs: dict[int, int], soundfont, sample_rate: int = 24000,
           gain: float = 0.5) -> np.ndarray:
    """Plays the notes through `soundfont` with fluidsynth -> mono float32 (n,)."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise FileNotFoundError("fluidsynth not found: apt-get install fluidsynth")
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = os.path.join(tmp, "in.mid"), os.path.join(tmp, "out.wav")
        Path(mid).write_bytes(midi_bytes(notes, programs))
        subprocess.run([exe, "-ni", "-q", "-g", str(gain), "-r", str(sample_rate), "-o",
                        "synth.cpu-cores=1", "-o", "synth.reverb.active=1", "-F", wav, "-T", "wav",
                        str(soundfont), mid], check=True, capture_output=True)
        audio, sr = sf.read(wav, dtype="float32", always_2d=True)
    assert sr == sample_rate, (sr, sample_rate)
    return audio.mean(axis=1)
