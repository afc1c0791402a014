"""Lightning checkpoint -> safetensors for ``timm.create_model(name, pretrained=True,
pretrained_cfg_overlay=dict(file=OUT))``: the LightningModule's ``model.`` prefix is stripped, and the EMA
weights are taken when the run averaged them (Lightning's EMA callback stores the average as the checkpoint's
``state_dict``, the raw weights under ``current_model_state``)."""
import argparse
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

PREFIX = 'model.'


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the model weights of ``checkpoint`` to ``out``; returns the metadata stored with them."""
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    state = ckpt['state_dict']
    weights = {k[len(PREFIX):]: v.contiguous() for k, v in state.items() if k.startswith(PREFIX)}
    weights = {k.replace('_orig_mod.', ''): v for k, v in weights.items()}  # torch.compile'd modules
    if not weights:
        raise ValueError(f'{checkpoint} holds no "{PREFIX}*" weights: is it an optnets recipe checkpoint?')
    hparams = ckpt.get('hyper_parameters', {})
    metadata = {key: str(hparams[key]) for key in ('model', 'num_classes', 'in_chans', 'model_kwargs')
                if key in hparams}
    metadata['ema'] = str('current_model_state' in ckpt)
    out = Path(out)
    partial = out.with_name(out.name + '.partial')
    save_file(weights, str(partial), metadata=metadata)
    partial.replace(out)  # never leaves a half-written file under the final name
    return metadata


def main(argv=None):
    parser = argparse.ArgumentParser(prog='optnets export', description=__doc__)
    parser.add_argument('checkpoint', help='a .ckpt written by `optnets train`')
    parser.add_argument('out', nargs='?', help='the .safetensors file to write')
    parser.add_argument('--hub-dir', help='instead, write a Hugging Face hub folder (timm config, card, run config)')
    parser.add_argument('--card', help='with --hub-dir: the model card to include as README.md')
    args = parser.parse_args(argv)
    if not Path(args.checkpoint).is_file():
        parser.exit(2, f'optnets export: no checkpoint at {args.checkpoint}\n')
    if args.hub_dir:
        from .hub import hub_folder
        model_args = hub_folder(args.checkpoint, args.hub_dir, args.card)
        print(f'wrote {args.hub_dir} (model args {model_args})\n'
              f'load it: timm.create_model("local-dir:{args.hub_dir}", pretrained=True); '
              f'upload it: optnets publish {args.hub_dir} --repo USER/NAME')
        return
    if not args.out:
        parser.exit(2, 'optnets export: give OUT (a .safetensors file) or --hub-dir DIR\n')
    metadata = export_checkpoint(args.checkpoint, args.out)
    model = metadata.get('model', 'MODEL')
    print(f'wrote {args.out} ({", ".join(f"{k}={v}" for k, v in metadata.items())})\n'
          f'load it: timm.create_model("{model}", pretrained=True, num_classes={metadata.get("num_classes", "N")}, '
          f'in_chans={metadata.get("in_chans", 3)}, pretrained_cfg_overlay=dict(file="{args.out}"))')
