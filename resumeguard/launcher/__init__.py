"""Zero-code adoption: ``resumeguard run -- CMD`` guards an unmodified training script.

The command puts :mod:`resumeguard.launcher.bootstrap` on ``PYTHONPATH``, so that every Python
process CMD starts (torchrun's and ``accelerate launch``'s workers, a shell script's python)
loads resumeguard first and patches libraries as they are imported (:mod:`.hooks`):
``wandb.init``, ``torch.save``/``torch.load`` and ``load_state_dict``, and the Lightning and
Transformers trainers.

May import: :mod:`resumeguard.integrations` and every layer below it; imported only by the
CLI, whose ``run`` subcommand it is.
"""
