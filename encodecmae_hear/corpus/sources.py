"""What the offline pretraining corpus is made of, and how each source is obtained.

Three kinds of source, all reachable through the Debian package archive alone:

* `PackageSource`: a data package (game music, sound effects, recorded voices,
  sound themes) fetched with `apt-get download` and unpacked with `dpkg -x`; its
  audio files (also those inside `.pk3` zip archives) become corpus files.
* espeak-ng speech: sentences from the licence texts in /usr/share/common-licenses,
  spoken by many voices, languages, rates and pitches (`speech_jobs`).
* rendered music: seeded procedural MIDI pieces (`midi.py`) played by fluidsynth
  through a General MIDI soundfont (`music_jobs`).

`role` says where a source goes: "pretrain" sources are split train/valid, "heldout"
sources are converted too but only feed the held-out evaluation tasks. Sources are
held out whole (different packages, different soundfont, different speakers), so no
held-out recording is ever seen in pretraining.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".wav", ".flac", ".mp3")
CATEGORIES = ("speech", "music", "environment")


@dataclass(frozen=True)
class PackageSource:
    package: str
    category: str                   # category of files no rule matches
    role: str = "pretrain"          # "pretrain" or "heldout"
    # (regex on the path inside the package, category or None to leave the file out);
    # the first matching rule wins
    rules: tuple[tuple[str, str | None], ...] = field(default_factory=tuple)

    def category_of(self, relpath: str) -> str | None:
        for pattern, category in self.rules:
            if re.search(pattern, relpath, flags=re.IGNORECASE):
                return category
        return self.category


MUSIC_DIRS = (r"/music/", "music")
PACKAGE_SOURCES: tuple[PackageSource, ...] = (
    # recorded speech: voice actors of Fish Fillets (Czech, Dutch, English dialogues),
    # KLettres letters and syllables (many languages), Hedgewars voice packs
    PackageSource("fillets-ng-data", "speech", rules=(MUSIC_DIRS, (r"/sound/share/", "environment"))),
    PackageSource("fillets-ng-data-cs", "speech", rules=(MUSIC_DIRS,)),
    PackageSource("fillets-ng-data-nl", "speech", rules=(MUSIC_DIRS,)),
    PackageSource("klettres-data", "speech"),
    # music
    PackageSource("wesnoth-1.16-music", "music"),
    PackageSource("hyperrogue-music", "music"),
    PackageSource("drascula-music", "music"),
    PackageSource("warzone2100-music", "music"),
    PackageSource("nexuiz-music", "music"),
    PackageSource("asc-music", "music"),
    PackageSource("xmoto-data", "music"),
    # mixed game data: music folders are music, voice folders speech, the rest effects
    PackageSource("supertux-data", "environment", rules=(MUSIC_DIRS, (r"/speech/", "speech"))),
    PackageSource("hedgewars-data", "environment", rules=(MUSIC_DIRS, (r"/voices/", "speech"))),
    PackageSource("extremetuxracer-data", "environment", rules=(MUSIC_DIRS,)),
    PackageSource("openarena-data", "environment", rules=(MUSIC_DIRS,)),
    PackageSource("pingus-data", "environment"),
    # sound effects: Tux Paint stamp sounds (animals, vehicles, instruments; spoken
    # stamp descriptions in a few languages), strategy-game units and ambience
    PackageSource("tuxpaint-stamps-default", "environment", rules=(
        (r"_desc(_(es|de|ja|pt_BR))?\.ogg$", "speech"), (r"_desc_", None),
        (r"_[a-z]{2}(_[A-Z]{2})?\.ogg$", "speech"))),
    PackageSource("tuxpaint-data", "environment"),
    PackageSource("megaglest-data", "environment", rules=(MUSIC_DIRS,)),
    PackageSource("wesnoth-1.16-data", "environment", rules=(MUSIC_DIRS,)),
    PackageSource("widelands-data", "environment", rules=(MUSIC_DIRS,)),
    PackageSource("warmux-data", "environment", rules=(MUSIC_DIRS, (r"/voices/", "speech"))),
    PackageSource("supertuxkart-data", "environment", rules=(MUSIC_DIRS,)),
    # desktop sound themes
    PackageSource("sound-theme-freedesktop", "environment"),
    PackageSource("oxygen-sounds", "environment"),
    PackageSource("deepin-sound-theme", "environment"),
    PackageSource("lomiri-sounds", "environment", rules=((r"/ringtones/", "music"),)),
    PackageSource("sound-icons", "environment"),
    # held out for evaluation only: other speakers, other effect collections
    PackageSource("ktuberling-data", "speech", role="heldout"),
    PackageSource("lincity-ng-data", "environment", role="heldout"),
    PackageSource("scorched3d-data", "environment", role="heldout"),
    PackageSource("minetest-data", "environment", role="heldout"),
    PackageSource("colobot-common-sounds", "environment", role="heldout", rules=(("/music/", None),)),
)

# tools and resources: (package, what for)
TOOL_PACKAGES = {"espeak-ng": "speech synthesis", "fluidsynth": "MIDI rendering"}
SOUNDFONTS = {
    "pretrain": ("fluid-soundfont-gm", "usr/share/sounds/sf2/FluidR3_GM.sf2"),
    "heldout": ("musescore-general-soundfont-small", "usr/share/sounds/sf3/MuseScore_General_Lite.sf3"),
}
ESPEAK_DATA_PACKAGE = "espeak-ng-data"
LICENCE_TEXTS = Path("/usr/share/common-licenses")


def licence_of(copyright_text: str) -> str:
    """Short licence names from a Debian copyright file (DEP-5 `License:` fields,
    else well-known names found in the text)."""
    names = []
    for match in re.finditer(r"^License:[ \t]*(\S.*)$", copyright_text, flags=re.MULTILINE):
        name = match.group(1).strip()
        if name not in names and not name.endswith(":"):
            names.append(name)
    if not names:
        for pattern in (r"GPL-?\d(\.\d)?\+?", r"GNU (Lesser |Library )?General Public License",
                        r"CC[- ]BY(-SA)?[- ]?\d(\.\d)?", r"Creative Commons[\w -]*", r"MIT",
                        r"BSD[\w-]*", r"public domain", r"Artistic"):
            found = re.search(pattern, copyright_text, flags=re.IGNORECASE)
            if found and found.group(0) not in names:
                names.append(found.group(0))
    return ", ".join(names) if names else "unknown (see copyright file)"


def sentences(limit: int | None = None) -> list[str]:
    """Sentences (8 to 60 words) of the licence texts shipped with Debian, sorted files."""
    out = []
    for path in sorted(LICENCE_TEXTS.glob("*")):
        if path.is_file() and not path.is_symlink():
            text = " ".join(path.read_text(errors="ignore").split())
            for s in re.split(r"(?<=[.;:!?])\s+", text):
                s = re.sub(r"[^\w ,.;:'()-]", " ", s).strip()
                if 8 <= len(s.split()) <= 60:
                    out.append(s)
    return out[:limit]


@dataclass(frozen=True)
class SpeechJob:
    name: str        # output stem
    voice: str       # espeak-ng voice, e.g. "en-us+f3"
    rate: int        # words per minute
    pitch: int       # 0..99
    text: str


# languages whose espeak-ng voices read the English licence texts (accented) or
# their own digit names; variants give different speakers
ESPEAK_LANGUAGES = ("en", "en-us", "en-gb-scotland", "en-029", "de", "fr", "es", "it", "pt",
                    "nl", "pl", "cs", "ru", "sv", "fi", "tr", "hi", "vi", "id", "el")
ESPEAK_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5",
                   "croak", "klatt", "klatt2", "klatt3", "whisper", "Andy", "Denis", "Gene",
                   "Jacky", "Storm", "Tweaky", "edward", "iven", "kaukovalta", "grandma",
                   "grandpa", "belinda", "david", "linda", "robert", "steph", "victor")


def speech_jobs(n: int, seed: int = 0, words_per_job: int = 70) -> list[SpeechJob]:
    """n seeded utterances of about `words_per_job` words each (≈20-35 s)."""
    rng = np.random.default_rng(seed)
    pool = sentences()
    if not pool:
        raise FileNotFoundError(f"no licence texts in {LICENCE_TEXTS} for speech synthesis")
    jobs = []
    for i in range(n):
        words: list[str] = []
        start = int(rng.integers(len(pool)))
        while len(words) < words_per_job:
            words += pool[start % len(pool)].split()
            start += 1
        voice = f"{ESPEAK_LANGUAGES[i % len(ESPEAK_LANGUAGES)]}+{ESPEAK_VARIANTS[int(rng.integers(len(ESPEAK_VARIANTS)))]}"
        jobs.append(SpeechJob(f"espeak-{i:05d}", voice, int(rng.integers(110, 230)),
                              int(rng.integers(15, 85)), " ".join(words)))
    return jobs
