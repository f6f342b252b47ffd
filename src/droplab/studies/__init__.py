"""The engines behind the commands: sweeps, the UCI protocol, the Fashion-MNIST MC study, the
demo's two runs, the kernel benchmark. Plain functions taking plain values: no argparse, no
report imports; the command modules (``droplab.cli``) parse and print, ``droplab.report`` renders.
"""
