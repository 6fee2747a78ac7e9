"""What converting processes buy a LUT build: LUT layers converted with 1 and with N processes at
once (`Measurer.prepare_many`, `--prepare-workers`), side by side in one run.

A LiteRT LUT converts every layer of the space with litert-torch before timing it; the conversions
take most of the build. The same random layers of the MnasNet space (seeded) are converted by each
setting in turn, in the order given, each with a fresh measurer (its processes spawned inside the
timed span, as a build pays for them), and the table gives wall seconds, seconds per layer and the
speed-up over the first setting.

    python benchmarks/lut_prepare.py --backend litert --resolution 224 -n 48 --workers 1,2
"""

from __future__ import annotations

import argparse
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="litert")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("-n", type=int, default=48, help="layers converted by each setting")
    parser.add_argument("--workers", default="1,2", help="converting processes, comma-separated settings")
    args = parser.parse_args()

    from edgenas.latency.backends import get_backend
    from edgenas.latency.lut import space_layers
    from edgenas.latency.protocol import Measurer
    from edgenas.spaces import get_space

    space = get_space("mnas", resolution=args.resolution, num_classes=args.classes)
    specs = random.Random(0).sample(space_layers(space), args.n)
    backend = get_backend(args.backend)
    backend.require()
    print(f"{args.n} random layers of the MnasNet space at {args.resolution} px, backend {args.backend}")
    print("| converting processes | wall s | s per layer | speed-up |")
    print("|---|---|---|---|")
    first = None
    for workers in (int(w) for w in args.workers.split(",")):
        measurer = Measurer(backend, prepare_workers=workers)
        try:
            models = [(spec.build(space.config.network).eval(), spec.input_shape) for spec in specs]
            started = time.perf_counter()
            done = measurer.prepare_many(models)
            seconds = time.perf_counter() - started
        finally:
            measurer.close()
        failed = [item for item in done if isinstance(item, Exception)]
        if failed:
            raise SystemExit(f"{len(failed)} layers failed to convert: {failed[0]}")
        first = first or seconds
        print(f"| {workers} | {seconds:.1f} | {seconds / args.n:.2f} | {first / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
