"""Teacher target streams for `pretrain --targets mel-kmeans --teachers crepe,vad`: each
teacher's k-means centroids, fitted on corpus crops with the shared `teacher_kmeans`
(the mel stream's settings: --clusters, --kmeans-clips, the run's seed), or taken from
the checkpoint on resume, and its provenance record (package, version, licence, sha256
of the weight file, feature size, clusters, frames fitted on, loss weight).

With `--teacher-cache DIR` the features of the training crops and of the k-means crops
of each teacher the cache holds are read from it (`cache-teachers` wrote it, cache.py)
instead of being computed; teachers it does not hold are computed on the fly,
and each teacher's record keeps the cache's header record under "cache". A resumed run
takes its features from where the run started taking them: a cache, or the teacher."""
from __future__ import annotations

from encodecmae_hear.errors import UserError
from encodecmae_hear.train.objectives import KMeansStream, teacher_kmeans
from encodecmae_hear.train.teachers import load_teacher, parse_teachers
from encodecmae_hear.train.teachers.cache import TeacherCache


def parse_weights(text: str, count: int) -> list[float]:
    """'' -> 1 for each teacher; one number -> that for each; else one per teacher."""
    if not text.strip():
        return [1.0] * count
    try:
        weights = [float(w) for w in text.split(",")]
    except ValueError:
        raise UserError(f"--teacher-weights must be numbers separated by commas, got {text!r}") from None
    if len(weights) == 1:
        weights *= count
    if len(weights) != count or min(weights, default=0.0) < 0:
        raise UserError(f"--teacher-weights needs one non-negative weight per teacher ({count}), "
                        f"got {text!r}")
    return weights


def recorded_teachers(resume: dict | None) -> list[dict]:
    return list(resume["provenance"].get("teachers", [])) if resume is not None else []


def check_same_teachers(names: list[str], resume: dict | None, out) -> None:
    """A resumed run keeps its teachers: --teachers must name the same ones, in order."""
    if resume is None:
        return
    recorded = [r["name"] for r in recorded_teachers(resume)]
    if recorded != names:
        raise UserError(f"{out} was trained with teachers {','.join(recorded) or '(none)'}; "
                        f"pass the same --teachers")


def chosen_teachers(args, resume: dict | None) -> tuple[list[str], list[float]]:
    """Names and loss weights from --teachers / --teacher-weights; a resumed run must name
    the teachers it started with and keeps its weights."""
    names = parse_teachers(args.teachers)
    check_same_teachers(names, resume, args.out)
    if resume is not None:
        return names, [r["weight"] for r in recorded_teachers(resume)]
    return names, parse_weights(args.teacher_weights, len(names))


def check_same_source(name: str, recorded: dict, cache: TeacherCache | None, out) -> None:
    """A resumed run reads its teacher features from a cache if and only if it started so."""
    if "cache" in recorded and cache is None:
        raise UserError(f"{out} was trained with {name} targets read from the teacher cache "
                        f"{recorded['cache']['path']}: pass --teacher-cache to resume it")
    if "cache" not in recorded and cache is not None:
        raise UserError(f"{out} was trained with {name} targets computed on the fly, not read "
                        f"from a teacher cache: resume it without --teacher-cache, or with a "
                        f"cache that does not hold {name}")


def teacher_streams(args, frontend: str, source, seed: int, proc, log,
                    resume: dict | None) -> tuple[list[KMeansStream], list[dict]]:
    """The streams and provenance records of the teachers in `args.teachers`."""
    names, weights = chosen_teachers(args, resume)
    cache = TeacherCache(args.teacher_cache, frontend) if args.teacher_cache else None
    streams, records = [], []
    for name, weight, recorded in zip(names, weights, recorded_teachers(resume) or [None] * len(names)):
        teacher = load_teacher(name, frontend)
        record = teacher.provenance()
        features = teacher  # what the stream's ids are the nearest centroids of
        cached = cache if cache is not None and cache.holds(name) else None
        if cached is not None:
            features = cached.teacher(name, record)
            cached.check_covers(source, features)
        if recorded is not None:
            check_same_source(name, recorded, cached, args.out)
            if record["sha256"] != recorded["sha256"]:
                raise UserError(f"teacher {name!r}: the installed {record['package']} "
                                f"{record['version']} ships other weights ({record['weight_file']} "
                                f"sha256 {record['sha256'][:12]}...) than the run was started with "
                                f"({recorded['version']}, {recorded['sha256'][:12]}...); install "
                                f"{record['package']}=={recorded['version']} to resume")
            centroids, record = resume["training"]["objective"]["teacher_centroids"][name], recorded
        else:
            where = (f" (read from the teacher cache {cached.folder})" if cached is not None else
                     " (computed on the fly: the teacher cache does not hold it)" if cache is not None else "")
            log(f"teacher {name}: {record['package']} {record['version']}, {record['features']}{where}")
            centroids, frames = teacher_kmeans(features, teacher.out_dim, source, args.clusters,
                                               args.kmeans_clips, None, seed, batch=4096, iters=100,
                                               proc=proc, log=log)
            record.update(clusters=args.clusters, frames=frames, weight=weight)
            if cached is not None:
                record["cache"] = cached.provenance(name)
        streams.append(KMeansStream(name, features, centroids, record["weight"]))
        records.append(record)
    return streams, records
