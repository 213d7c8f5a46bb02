#!/usr/bin/env bash
# Does the published-scale recipe learn? A CPU run of configs/trackml/tracking.yaml (width 256, 8 + 8
# layers, 2,000 sampled seed queries) on simulated pile-up-200 ttbar events, logging the loss and the
# validation efficiency as it trains; docs/trackml.md ("The published-scale recipe on a CPU") has the
# figures of the run of 2026-12-07 and what a GPU run needs.
#   OUT=/tmp/full bash bench/full_scale_cpu.sh      # about 90 minutes on 2 cores (200 tracker steps)
# Stages (1 and 2 are skipped when their output exists):
#   1. simulate 60 events (54 train, 4 val, 2 test) and prepare the pixel volumes 7, 8, 9 (57k hits each);
#   2. an ideal filter stands in for a trained one: filter.yaml takes 90 s per step here (57k hits through
#      8 layers of width 256, 21 GB), and filter_small.yaml learned nothing at pile-up 200 in 160-250
#      steps (docs/trackml.md). It keeps every hit of the particles above 0.9 GeV and random other hits up
#      to 10k per event, the published filter's output size; filter_prob is 1 for every kept hit (it
#      carries no information, and no truth);
#   3. tracking.yaml for TRACKER_STEPS steps, validated every VAL_EVERY steps on 2 events (one query per
#      kept hit there: the DM efficiency of the raw masks, before any post-processing), then
#      bench/full_scale_curves.py draws the loss and the efficiency against the step;
#   4. the tracker of tracker/.../last.ckpt (the newest state) on the
#      test events with the demo's post-processing: evaluation.json, predictions.h5, plots/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
configs=$repo/src/hepattn/configs/trackml
out="${OUT:-full_scale_cpu}"
mkdir -p "$out"
cd "$out"

if [ ! -d prepared/test ]; then
    hepattn simulate --events 60 --pileup 200 --seed 7 --first-event 500000 --workers 2 --out events/all
    mkdir -p events/train events/val events/test
    for i in $(seq 500000 500059); do
        if [ "$i" -lt 500004 ]; then split=val; elif [ "$i" -lt 500006 ]; then split=test; else split=train; fi
        mv events/all/event000"$i"-* events/$split/
    done
    for split in train val test; do
        cp events/all/detectors.csv.gz events/$split/
        hepattn prep --input events/$split --output prepared/$split --volumes 7 8 9
    done
fi

if [ ! -d filtered/test ]; then
    python3 - <<'EOF'
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hepattn.experiments.trackml.dataset import load_event, save_event
from hepattn.experiments.trackml.reco import select_hits

rng = np.random.default_rng(0)
for split in ("train", "val", "test"):
    out = Path("filtered") / split
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(sorted((Path("prepared") / split).glob("event*.npz")), desc=f"ideal filter {split}"):
        event = load_event(path)
        owner = event["hit_particle"]
        pt = np.where(owner >= 0, event["particle_pt"][owner.clip(0)], 0.0)
        keep = pt > 0.9
        others = np.flatnonzero(~keep)
        keep[rng.choice(others, max(10_000 - keep.sum(), 0), replace=False)] = True
        event["hit_filter_prob"] = np.ones(len(owner), np.float32)  # no information, not a leak of truth
        save_event(out / path.name, select_hits(event, keep))
EOF
fi

steps=${TRACKER_STEPS:-200}
hepattn fit --config "$configs/tracking.yaml" \
    --model.model.init_args.encoder.init_args.kernel=torch \
    --data.init_args.train_dir=filtered/train --data.init_args.val_dir=filtered/val \
    --data.init_args.num_workers=1 --data.init_args.num_val=2 \
    --trainer.max_steps="$steps" --trainer.val_check_interval="${VAL_EVERY:-40}" \
    --trainer.log_every_n_steps=5 --trainer.default_root_dir=tracker \
    --trainer.accelerator=cpu --trainer.precision=32-true --trainer.num_sanity_val_steps=0
python3 "$repo/bench/full_scale_curves.py" tracker --out curves.png | tee curves.txt

# 4. the trained tracker on the test events with the demo's post-processing, scored on the full events
python3 - <<'EOF'
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from hepattn.experiments.trackml.demo import QUICK, config, last_checkpoint, load, reconstruction_settings
from hepattn.experiments.trackml.evaluate import evaluate
from hepattn.experiments.trackml.predictions import write_predictions
from hepattn.experiments.trackml.dataset import load_event
from hepattn.experiments.trackml.reco import Reconstruction

overrides = ["--model.model.init_args.encoder.init_args.kernel=torch", "--trainer.precision=32-true"]
tracker = load([config("trackml/tracking.yaml")], last_checkpoint(Path("tracker")), overrides)
reco = Reconstruction(filter=None, tracker=tracker, **reconstruction_settings(QUICK))
events = []
for path in tqdm(sorted(Path("filtered/test").glob("event*.npz")), desc="reconstruct test"):
    kept, full = load_event(path), load_event(Path("prepared/test") / path.name)
    with torch.no_grad():
        owner, tracks = reco.tracks(kept)  # the tracker alone: the ideal filter's hits are its input
    hit_track = np.full(len(full["hit_x"]), -1, np.int64)
    hit_track[kept["hit_index"]] = owner
    prob = np.zeros(len(hit_track), np.float32)
    prob[kept["hit_index"]] = 1.0  # the ideal filter's choice: kept or not
    preds = {"hit_filter_prob": prob, "hit_track": hit_track} | {f"track_{k}": v for k, v in tracks.items()}
    events.append((path.stem, full, preds))
write_predictions("predictions.h5", events, {"min_pt": 1.0, "max_eta": 4.0, "threshold": 0.5})
metrics = evaluate("predictions.h5", "plots")
Path("evaluation.json").write_text(json.dumps(metrics, indent=2) + "\n")
print(json.dumps(metrics["tracking"], indent=2))
EOF
