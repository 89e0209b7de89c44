#!/usr/bin/env bash
# E4's Boundary Attack (1,000 steps) against a gradient attack in the same norm on the same images:
# L2 PGD-40 (random start) at E4's larger L2 radii, on the 100 test images E4 attacks, for the
# CPU preset's models. A radius where PGD breaks what the Boundary Attack left robust shows how
# much of E4's "robustness" is the weakness of a 1,000-step decision-based search.
#
#   nohup bash scripts/cpu_models/e4_gradient_check.sh ../shared/data > runs/logs/e4_gradient_check.log 2>&1 &
set -euo pipefail
DATA=${1:-${ODEBENCH_DATA:-data}}
M=runs/reproduce/cpu/models
odebench attack -c $M/mnist/resnet50 -c $M/mnist/odenet -a pgd --attack-arg pgd.norm=l2 --attack-arg pgd.steps=40 \
  --attack-arg pgd.step_size=0.1 --eps 0.5,1,2,3 --n-samples 100 --data-dir "$DATA" --device cpu \
  --out runs/e4_gradient_check/mnist
odebench attack -c $M/cifar10-jpeg/resnet50 -c $M/cifar10-jpeg/odenet -a pgd --attack-arg pgd.norm=l2 \
  --attack-arg pgd.steps=40 --attack-arg pgd.step_size=0.05 --eps 50,100,200,400 --eps-scale 255 --n-samples 100 \
  --data-dir "$DATA" --device cpu --out runs/e4_gradient_check/cifar10-jpeg
