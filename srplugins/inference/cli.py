"""``srplugins-infer``: super-resolve an image or a folder with any supported checkpoint or a BasicSR option file.

Flags follow Real-ESRGAN's ``inference_realesrgan.py`` (``-i``, ``-o``, ``-s/--outscale``, ``-t/--tile``,
``--tile_pad``, ``--suffix``, ``--ext``, ``--alpha_upsampler``, ``--face_enhance``) plus precision, channels_last,
compile and self-ensemble switches. Nothing is ever destroyed: an output never replaces an input file; existing outputs
are only replaced with ``--overwrite``; when the output folder is the input folder, files that are outputs of a
previous run (``<stem>_<suffix>.<ext>``) are skipped, and an empty ``--suffix`` there is refused. The input path and
the output folder are checked before the model is loaded. Animated GIFs are processed frame by frame into an animated
GIF (``--ext auto``) or refused.
"""
import argparse
import os
import sys
import warnings

__all__ = ['build_parser', 'main', 'process_paths', 'list_inputs', 'plan_outputs']

PROG = 'srplugins-infer'
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.gif', '.ppm', '.pgm', '.exr')


class UsageError(ValueError):
    """A problem with the command line (paths, flags) found before any work is done."""


def list_inputs(path):
    """Files to process: ``path`` itself, or the entries of the folder ``path`` (sorted, not recursive)."""
    if os.path.isfile(path):
        return [path]
    if os.path.isdir(path):
        return [os.path.join(path, name) for name in sorted(os.listdir(path))]
    raise FileNotFoundError(f'-i/--input {path!r} is neither a file nor a folder.')


def _output_ext(requested, in_ext, dtype=None, mode=None, animated=False):
    import numpy as np
    ext = in_ext.lstrip('.').lower() if requested == 'auto' else requested
    if ext == 'gif' and not animated:
        ext = 'png'  # OpenCV cannot encode GIF; a still GIF becomes a lossless PNG
    if ext in ('jpg', 'jpeg') and (mode in ('RGBA', 'LA') or dtype == np.uint16):
        if requested != 'auto':
            warnings.warn('JPEG cannot hold alpha or 16-bit data; writing PNG instead.')
        ext = 'png'
    return ext or 'png'


def _out_name(path, suffix, ext):
    stem = os.path.splitext(os.path.basename(path))[0]
    return f'{stem}_{suffix}.{ext}' if suffix else f'{stem}.{ext}'


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def plan_outputs(inputs, input_arg, output, suffix='out', ext='auto', overwrite=False, create=False):
    """Check the input path and the output folder and decide, before any model is loaded, what each input becomes.

    ``create=True`` makes the output folder once the checks passed.

    Returns:
        tuple[list, list]: ``[(input, output_path), ...]`` to process and ``[(input, reason), ...]`` skipped.

    Raises:
        UsageError: The output is not a writable folder; an output would replace an input; outputs exist and
            ``overwrite`` is False; an empty suffix in the input folder.
    """
    if os.path.exists(output) and not os.path.isdir(output):
        raise UsageError(f'-o/--output {output!r} exists and is not a folder.')
    existing_dir = os.path.abspath(output)
    while not os.path.exists(existing_dir):  # a folder to be created: its nearest existing parent must allow it
        existing_dir = os.path.dirname(existing_dir)
    if not os.path.isdir(existing_dir):
        raise UsageError(f'-o/--output {output!r} cannot be created: {existing_dir!r} is not a folder.')
    if not os.access(existing_dir, os.W_OK | os.X_OK):
        raise UsageError(f'-o/--output {output!r} is not writable ({existing_dir!r} does not allow writing).')
    if create:
        os.makedirs(output, exist_ok=True)
    input_dir = input_arg if os.path.isdir(input_arg) else os.path.dirname(os.path.abspath(input_arg))
    same_folder = _same_file(input_dir, output)
    if same_folder and not suffix:
        raise UsageError(f'-o/--output is the input folder {output!r} and --suffix is empty: outputs would replace or '
                         'mix with the inputs. Choose another output folder or a --suffix.')
    todo, skipped, existing, plan = [], [], [], []
    for path in inputs:
        if not os.path.isfile(path):
            skipped.append((path, 'not a file'))
        elif same_folder and suffix and os.path.isdir(input_arg) and \
                os.path.splitext(os.path.basename(path))[0].endswith(f'_{suffix}'):
            skipped.append((path, f'output of a previous run (name ends with _{suffix})'))
        else:
            todo.append(path)
    for path in todo:
        in_ext = os.path.splitext(path)[1]
        out_path = os.path.join(output, _out_name(path, suffix, _output_ext(ext, in_ext, animated=True)))
        for candidate in sorted({out_path, os.path.join(output, _out_name(path, suffix, 'png'))}):
            if any(_same_file(candidate, other) for other in todo):
                raise UsageError(f'the output {candidate!r} would replace an input file; choose another -o/--output '
                                 'or --suffix.')
            if os.path.exists(candidate) and not overwrite:
                existing.append(candidate)
        plan.append((path, out_path))
    if existing:
        shown = ', '.join(existing[:5]) + (f' ... ({len(existing)} in all)' if len(existing) > 5 else '')
        raise UsageError(f'output file(s) exist: {shown}. Pass --overwrite to replace them, or choose another '
                         '-o/--output or --suffix.')
    return plan, skipped


def _enhance_faces(face_enhancer, img, out, upscale):
    """Restore faces of a colour image into its upscaled version (alpha and 16-bit kept)."""
    import numpy as np
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        warnings.warn('Face enhancement skipped for a grayscale image.')
        return out, 0
    small = img[..., :3]
    if small.dtype == np.uint16:
        small = (small.astype(np.float32) / 257. + 0.5).astype(np.uint8)
    elif small.dtype != np.uint8:
        small = (np.clip(small, 0, 1) * 255. + 0.5).astype(np.uint8)
    colour, count = face_enhancer.enhance(np.ascontiguousarray(small), np.ascontiguousarray(out[..., :3]), upscale)
    if out.shape[2] == 4:
        colour = np.concatenate([colour, out[..., 3:]], axis=2)
    return colour, count


def process_paths(upscaler,
                  paths,
                  output,
                  outscale=None,
                  tile=0,
                  tile_pad=32,
                  suffix='out',
                  ext='auto',
                  alpha_upsampler='network',
                  progress=True,
                  face_enhancer=None,
                  overwrite=False,
                  input_arg=None):
    """Super-resolve every image in ``paths`` into the folder ``output`` (see :func:`plan_outputs` for the rules).

    ``face_enhancer`` (:class:`srplugins.inference.face.FaceEnhancer`) additionally restores detected faces with its own
    model and pastes them into the result. ``tile='auto'`` picks a tile per image from the free memory.

    Returns:
        dict: ``{'written': [...], 'skipped': [(path, reason), ...]}``.
    """
    from srplugins.inference.images import (frame_durations, image_frames, read_frames, read_image, write_frames,
                                            write_image)
    if input_arg is None:
        input_arg = paths[0] if len(paths) == 1 else os.path.dirname(os.path.abspath(paths[0]))
    plan, skipped = plan_outputs(paths, input_arg, output, suffix=suffix, ext=ext, overwrite=overwrite, create=True)
    written = []
    iterator = plan
    if progress:
        from tqdm import tqdm
        iterator = tqdm(plan, unit='image', desc=PROG)

    def run(img):
        tile_size = tile
        if tile == 'auto':
            from srplugins.inference.tiling import auto_tile
            tile_size = auto_tile(
                upscaler.net, (1, 3, *img.shape[:2]),
                upscaler.scale,
                upscaler.device,
                size_multiple=upscaler.size_multiple,
                tile_pad=tile_pad)
        out, mode = upscaler.enhance(
            img, outscale=outscale, tile=tile_size, tile_pad=tile_pad, alpha_upsampler=alpha_upsampler)
        if face_enhancer is not None:
            out, _ = _enhance_faces(face_enhancer, img, out, outscale or upscaler.scale)
        return out, mode

    for path, out_path in iterator:
        in_ext = os.path.splitext(path)[1]
        frames = image_frames(path) if in_ext.lower() in ('.gif', '.webp', '.png', '.tif', '.tiff') else 1
        if frames > 1:
            if ext not in ('auto', 'gif') or in_ext.lower() != '.gif':
                warnings.warn(f'Skipping {path!r}: an animated image with {frames} frames; only animated GIFs with '
                              '--ext auto are processed frame by frame.')
                skipped.append((path, f'animated image with {frames} frames (needs a GIF input and --ext auto)'))
                continue
            outs = [run(frame)[0] for frame in read_frames(path)]
            write_frames(out_path, outs, durations=frame_durations(path))
            written.append(out_path)
            continue
        img = read_image(path, grey_alpha=True)
        if img is None and in_ext.lower() == '.gif':
            img = read_frames(path)[0]
        if img is None:
            warnings.warn(f'Skipping {path!r}: not a decodable image.')
            skipped.append((path, 'not a decodable image'))
            continue
        out, mode = run(img)
        out_ext = _output_ext(ext, in_ext, out.dtype, mode)
        final = os.path.join(output, _out_name(path, suffix, out_ext))
        if _same_file(final, path):  # guarded by plan_outputs; kept as the last line of defence
            raise UsageError(f'refusing to write onto the input {path!r}.')
        write_image(final, out)
        written.append(final)
    return {'written': written, 'skipped': skipped}


# --------------------------------------------------------------------------------------------------------------- #
#  Command line
# --------------------------------------------------------------------------------------------------------------- #
def _tile_arg(value):
    if value == 'auto':
        return 'auto'
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f'expected 0 (no tiling), a positive integer or auto, got {number}')
    return number


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG,
        description='Super-resolve an image or every image of a folder with any supported checkpoint (basicsr / '
        'Real-ESRGAN, KAIR/BSRGAN, old ESRGAN / DASR SRN, A2N, SRResNet, DASR down-sampler, srplugins training '
        'checkpoints; more with the spandrel extra) or a BasicSR option file.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('-i', '--input', default='inputs', help='input image or folder')
    parser.add_argument('-o', '--output', default='results', help='output folder')
    src = parser.add_mutually_exclusive_group()
    src.add_argument('--model_path', help='checkpoint file in any supported layout')
    src.add_argument('--opt', help='BasicSR option file: network_g is built, path.pretrain_network_g loaded')
    parser.add_argument('--opt_model_path', help='with --opt: weights overriding path.pretrain_network_g')
    parser.add_argument(
        '--scale',
        type=int,
        help='network scale where the weights do not fix it (A2N x2 / x3, old ESRGAN x2 / x3); '
        'with --opt it must equal the option scale')
    parser.add_argument('-s', '--outscale', type=float, help='final scale (Lanczos resize of the network output)')
    parser.add_argument(
        '-t', '--tile', type=_tile_arg, default=0, help='tile size in input pixels, 0 = no tiling, auto = fit memory')
    parser.add_argument('--tile_pad', type=int, default=32, help='context added on each side of a tile')
    parser.add_argument(
        '--precision',
        choices=['fp32', 'fp16', 'bf16'],
        help='autocast precision; fp16 needs CUDA, bf16 works on CPU and CUDA (default: fp16 on CUDA, fp32 on CPU)')
    parser.add_argument('--fp32', action='store_true', help='same as --precision fp32')
    parser.add_argument('--channels_last', action='store_true', help='run the network in NHWC memory format')
    parser.add_argument('--compile', action='store_true', help='torch.compile the network (first image is slow)')
    parser.add_argument('--ensemble', action='store_true', help='x8 self-ensemble (flips and transposes averaged)')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1, mps ...; default: cuda if available')
    parser.add_argument('--suffix', default='out', help='output name is <stem>_<suffix>.<ext>; "" for <stem>.<ext>')
    parser.add_argument(
        '--ext',
        default='auto',
        choices=['auto', 'png', 'jpg', 'webp', 'bmp', 'tif'],
        help='output format; auto = input format (PNG for alpha / 16-bit, animated GIF for animated GIF)')
    parser.add_argument('--overwrite', action='store_true', help='replace existing output files (never inputs)')
    parser.add_argument(
        '--alpha_upsampler',
        default='network',
        choices=['network', 'bicubic'],
        help='how the alpha channel of RGBA images is upscaled')
    parser.add_argument('--param_key', default=None, help='checkpoint entry holding the weights (default: automatic)')
    parser.add_argument(
        '--unsafe_load',
        action='store_true',
        help='allow pickles with arbitrary objects (torch.load weights_only=False); trusted files only')
    parser.add_argument(
        '--face_enhance',
        action='store_true',
        help='restore faces separately (needs facexlib and detection_Resnet50_Final.pth offline)')
    parser.add_argument('--face_model_path', help='with --face_enhance: SR checkpoint used for the aligned faces')
    parser.add_argument('--face_size', type=int, default=512, help='side of a restored face')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def _error(message, code=2):
    print(f'{PROG}: error: {message}', file=sys.stderr)
    return code


def main(argv=None):
    """Entry point of ``srplugins-infer`` and ``scripts/inference.py``. Returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.model_path is None and args.opt is None:
        parser.error('one of --model_path or --opt is required')
    if args.opt_model_path is not None and args.opt is None:
        parser.error('--opt_model_path only applies with --opt (use --model_path for a checkpoint alone)')
    if args.fp32 and args.precision not in (None, 'fp32'):
        parser.error(f'--fp32 contradicts --precision {args.precision}')
    # paths first: a wrong input or output is reported before the (slow) model load
    try:
        inputs = list_inputs(args.input)
        plan_outputs(inputs, args.input, args.output, suffix=args.suffix, ext=args.ext, overwrite=args.overwrite)
    except (UsageError, FileNotFoundError) as err:
        return _error(err)

    import torch

    from srplugins.inference.tiling import TileInferenceError
    from srplugins.inference.upscaler import load_upscaler
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    precision = 'fp32' if args.fp32 else args.precision
    if precision is None:
        precision = 'fp16' if torch.device(device).type == 'cuda' else 'fp32'
    extra = dict(
        device=device,
        precision=precision,
        channels_last=args.channels_last,
        compile=args.compile,
        ensemble=args.ensemble,
        unsafe=args.unsafe_load)
    try:
        if args.opt is not None:
            upscaler = load_upscaler(
                model_path=args.opt_model_path,
                opt=args.opt,
                scale=args.scale,
                param_key=args.param_key,
                model_path_flag='--opt_model_path',
                **extra)
        else:
            upscaler = load_upscaler(model_path=args.model_path, scale=args.scale, param_key=args.param_key, **extra)
        face_enhancer = None
        if args.face_enhance:
            if not args.face_model_path:
                raise ValueError('--face_enhance needs --face_model_path (an SR checkpoint for the aligned faces).')
            from srplugins.inference.face import FaceEnhancer, RetinaFaceDetector
            face_upscaler = load_upscaler(
                model_path=args.face_model_path,
                model_path_flag='--face_model_path',
                **dict(extra, ensemble=False, compile=False))
            face_enhancer = FaceEnhancer(face_upscaler, RetinaFaceDetector(device=device), face_size=args.face_size)
    except (ValueError, FileNotFoundError, ImportError) as err:
        return _error(err)
    if upscaler.info is not None and not args.quiet:
        print(upscaler.info.summary())
    print(upscaler.describe())
    try:
        result = process_paths(
            upscaler,
            inputs,
            args.output,
            outscale=args.outscale,
            tile=args.tile,
            tile_pad=args.tile_pad,
            suffix=args.suffix,
            ext=args.ext,
            alpha_upsampler=args.alpha_upsampler,
            progress=not args.quiet,
            face_enhancer=face_enhancer,
            overwrite=args.overwrite,
            input_arg=args.input)
    except UsageError as err:
        return _error(err)
    except TileInferenceError as err:
        return _error(err, code=1)
    print(f'written: {len(result["written"])} file(s) to {args.output}; skipped: {len(result["skipped"])}')
    for path, reason in result['skipped']:
        print(f'  skipped {path}: {reason}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
