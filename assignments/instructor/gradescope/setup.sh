#!/usr/bin/env bash
# Gradescope's image set-up: the project's CPU set-up (README.md), from the autograder's source.
set -euo pipefail
cd /autograder/source
python3 -m pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
python3 -m pip install -r requirements.txt
