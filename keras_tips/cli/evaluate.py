"""`keras-tips evaluate`: every shapes evaluation of a preset."""

import json
import os


def add_evaluate(subparsers):
    parser = subparsers.add_parser(
        "evaluate",
        help="Evaluate a preset on the embedded shapes dataset.",
        description=(
            "Zero-shot classification (CLS1, CLS2), image<->text retrieval "
            "with synthetic and web captions, k-NN on CLS features, linear "
            "segmentation and depth probes on frozen patch features, and "
            "zero-shot segmentation from the last block's value embeddings. "
            "Prints a table and writes OUTPUT (JSON)."
        ),
    )
    parser.add_argument("--preset", required=True, help="preset directory or registered name")
    parser.add_argument("--output", default=None, help="results JSON file")
    parser.add_argument("--num-train", type=int, default=400, help="validation scenes for probes / k-NN")
    parser.add_argument("--num-test", type=int, default=300, help="test scenes scored")
    parser.add_argument("--image-size", type=int, default=56, help="scene size (multiple of 14)")
    parser.add_argument("--probe-epochs", type=int, default=30,
                        help="epochs of the linear segmentation probe")
    parser.set_defaults(run=run_evaluate)


def run_evaluate(args):
    from keras_tips.evaluation.shapes_benchmark import evaluate_on_shapes
    from keras_tips.evaluation.shapes_benchmark import format_table
    from keras_tips.models.tips_model import TIPSModel

    model = TIPSModel.from_preset(args.preset)
    results = evaluate_on_shapes(
        model, args.num_train, args.num_test, args.image_size, args.probe_epochs
    )
    print(format_table({os.path.basename(os.path.normpath(args.preset)): results}))
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)
    return 0
