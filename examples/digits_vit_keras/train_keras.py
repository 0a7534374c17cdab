"""Train a tiny Keras ViT on sklearn digits; export ONNX (tf2onnx) and int8 TFLite.

Same task and split as ``examples/digits_vit`` (the PyTorch example):
``X = load_digits().images / 16``, ``train_test_split(test_size=450,
random_state=0, stratify=y)``.  Input ``x`` float32 [1, 8, 8], output
``logits`` [1, 10] (batch fixed to 1 in both exported models).

Architecture: 16 tokens of 4 pixels (plain reshape) -> Dense(32) embedding, learned cls
token (seq 17), learned position embedding, 2 pre-norm blocks (LayerNorm,
4-head x 8 self-attention written with tf.reshape / tf.transpose /
tf.matmul / scale multiply / tf.nn.softmax, residual, LayerNorm, Dense(64)
GELU, Dense(32), residual), final LayerNorm, cls token, Dense(10).

Outputs (next to this file):
  digits_vit_keras.onnx         tf2onnx, opset 17
  digits_vit_keras_int8.tflite  full-integer int8 (int8 input and output),
                                representative set = first 200 train images
a copy of the ONNX file at tests/fixtures/models/keras_tf2onnx.onnx, and its
"keras_tf2onnx" entry merged by name into tests/fixtures/manifest.json.

``--variant tflm`` trains the same model with the tanh-approximated GELU instead
(the only difference) and writes digits_vit_keras_tflm.onnx and
digits_vit_keras_tflm_int8.tflite, and no fixture or manifest entry.  The
converter does not fuse this spelling into the GELU op (int8 TFLite ops: ADD,
BATCH_MATMUL, CONCATENATION, DEQUANTIZE, FULLY_CONNECTED, MEAN, MUL, NEG,
QUANTIZE, RESHAPE, RSQRT, SOFTMAX, SQUARED_DIFFERENCE, STRIDED_SLICE, TANH,
TRANSPOSE), so it loads and runs in TFLite-Micro, float NEG included; it is the
model benchmarks/tflm_ram.py compares against TFLite-Micro's tensor arena.

It must run in a separate environment, never the project's main one:

  python3 -m venv /opt/tfenv
  /opt/tfenv/bin/pip install tensorflow==2.21.0 tf-keras==2.21.0 \
      tf2onnx==1.17.0 scikit-learn==1.9.1 onnx==1.23.2 onnxruntime==1.32.0 \
      ai-edge-litert==2.3.0 tflite-micro==0.dev20261023182759
  /opt/tfenv/bin/python examples/digits_vit_keras/train_keras.py

Versions known to work together (Python 3.11): tensorflow 2.21.0 (Keras
3.15.1 as tf.keras), tf2onnx 1.17.0, onnx 1.23.2, onnxruntime 1.32.0,
protobuf 7.36.2, numpy 2.4.6, scikit-learn 1.9.1, ai-edge-litert 2.3.0,
tflite-micro 0.dev20261023182759.  tf-keras is installed but not used.
The TFLite model is evaluated with ai_edge_litert's Interpreter (builtin
kernels, no XNNPACK delegate; falls back to tf.lite.Interpreter) and, if
importable, also with the TFLite-Micro Python interpreter.

Conversion notes: tf.nn.gelu lowers to Erfc, which tf2onnx 1.17 cannot
convert, so GELU is written with tf.math.erf (ONNX: Mul/Erf/Add/Mul; TFLite:
fused into the builtin GELU op, which tflite-micro does not register, so the
int8 model does not load in TFLite-Micro).  With TFLITE_BUILTINS_INT8 the
converter still leaves the NEG of every LayerNormalization mean in float
(DEQUANTIZE -> NEG -> QUANTIZE); everything else is int8.
"""

from __future__ import annotations

import os
import sys

# tf2onnx iterates over sets of names in places: pin the string hash seed (see also
# canonicalize_onnx) so that regenerating gives a byte-identical ONNX file.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import argparse  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework.convert_to_constants import (  # noqa: E402
    convert_variables_to_constants_v2,
)
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
from fixture_tools import merge_manifest, model_ops  # noqa: E402
SEED = 0
DIM, HEADS, HEAD_DIM, MLP, BLOCKS, TOKENS, PATCH = 32, 4, 8, 64, 2, 16, 4
SEQ = TOKENS + 1

keras = tf.keras
layers = keras.layers


def load_split():
    d = load_digits()
    X = d.images.astype(np.float32) / 16.0
    y = d.target.astype(np.int64)
    return train_test_split(X, y, test_size=450, random_state=0, stratify=y)


class Patchify(layers.Layer):
    """[B, 8, 8] -> [B, 16, 4]: plain reshape (a token is half an image row),
    the same tokenization as examples/digits_vit/vit.py."""

    def call(self, x):
        return tf.reshape(x, [-1, TOKENS, PATCH])


class ClsPos(layers.Layer):
    """Prepend a learned cls token and add a learned position embedding."""

    def build(self, input_shape):
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.cls = self.add_weight(name="cls", shape=(1, 1, DIM), initializer=init)
        self.pos = self.add_weight(name="pos", shape=(1, SEQ, DIM), initializer=init)

    def call(self, x):
        cls = tf.tile(self.cls, [tf.shape(x)[0], 1, 1])
        return tf.concat([cls, x], axis=1) + self.pos


class MHSA(layers.Layer):
    """Multi-head self-attention from plain TF ops (no Keras MultiHeadAttention)."""

    def __init__(self, heads=HEADS, head_dim=HEAD_DIM, **kw):
        super().__init__(**kw)
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.q = layers.Dense(inner, name="q")
        self.k = layers.Dense(inner, name="k")
        self.v = layers.Dense(inner, name="v")
        self.o = layers.Dense(DIM, name="out")
        self.scale = float(head_dim) ** -0.5

    def _split(self, t):  # [B, S, H*D] -> [B, H, S, D]
        t = tf.reshape(t, [-1, SEQ, self.heads, self.head_dim])
        return tf.transpose(t, [0, 2, 1, 3])

    def call(self, x):
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        s = tf.matmul(q, k, transpose_b=True) * self.scale  # [B, H, S, S]
        p = tf.nn.softmax(s, axis=-1)
        o = tf.matmul(p, v)  # [B, H, S, D]
        o = tf.transpose(o, [0, 2, 1, 3])
        o = tf.reshape(o, [-1, SEQ, self.heads * self.head_dim])
        return self.o(o)


def gelu(x):
    """Exact (erf) GELU.  tf.nn.gelu lowers to Erfc, which tf2onnx cannot convert."""
    return 0.5 * x * (1.0 + tf.math.erf(x * 0.7071067811865476))


def gelu_tanh(x):
    """Tanh-approximated GELU from Mul/Add/Tanh (ONNX: Mul/Add/Tanh; TFLite: TANH and
    int8 arithmetic, not the GELU op, which tflite-micro does not register)."""
    return 0.5 * x * (1.0 + tf.math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))


# --variant -> (GELU, file stem, writes the test fixture and its manifest entry)
VARIANTS = {
    "default": (gelu, "digits_vit_keras", True),
    "tflm": (gelu_tanh, "digits_vit_keras_tflm", False),
}


class ClsSelect(layers.Layer):
    def call(self, x):
        return x[:, 0, :]


def build_model(batch=None, activation=gelu):
    x_in = keras.Input(shape=(8, 8), batch_size=batch, name="x")
    h = layers.Dense(DIM, name="embed")(Patchify(name="patchify")(x_in))
    h = ClsPos(name="cls_pos")(h)
    for i in range(BLOCKS):
        a = layers.LayerNormalization(epsilon=1e-5, name=f"b{i}_ln1")(h)
        h = h + MHSA(name=f"b{i}_attn")(a)
        m = layers.LayerNormalization(epsilon=1e-5, name=f"b{i}_ln2")(h)
        m = layers.Dense(MLP, activation=activation, name=f"b{i}_fc1")(m)
        h = h + layers.Dense(DIM, name=f"b{i}_fc2")(m)
    h = layers.LayerNormalization(epsilon=1e-5, name="ln_f")(h)
    logits = layers.Dense(10, name="head")(ClsSelect(name="cls_select")(h))
    return keras.Model(x_in, logits, name="digits_vit_keras")


def compare_split(Xtr, Xte, yte):
    d = REPO / "examples" / "digits_vit" / "data"
    if not (d / "test_x.npy").exists():
        print("split: examples/digits_vit/data/test_x.npy not found, not compared")
        return None
    tx, ty = np.load(d / "test_x.npy"), np.load(d / "test_y.npy")
    same = tx.shape == Xte.shape and np.array_equal(tx.astype(np.float32), Xte) \
        and np.array_equal(ty.astype(np.int64), yte)
    if (d / "calib.npy").exists():
        c = np.load(d / "calib.npy")
        print(f"split: calib.npy {c.shape} equals first {len(c)} train images:",
              np.array_equal(c.reshape(-1, 8, 8).astype(np.float32), Xtr[: len(c)]))
    print("split: identical to examples/digits_vit/data:", same)
    return same


def tflite_eval(path, Xte, yte):
    """Accuracy with the TFLite interpreter's builtin (reference/optimized) kernels,
    without the default XNNPACK delegate, plus the op list and the ops left in float."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        which = "ai_edge_litert"
    except ImportError:  # pragma: no cover
        Interpreter, OpResolverType = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
        which = "tf.lite"
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    si, zi = inp["quantization"]
    so, zo = out["quantization"]
    preds, logits = [], []
    for x in Xte:
        q = np.clip(np.round(x / si) + zi, -128, 127).astype(np.int8)[None]
        it.set_tensor(inp["index"], q)
        it.invoke()
        r = (it.get_tensor(out["index"]).astype(np.float32) - zo) * so
        logits.append(r[0])
        preds.append(int(np.argmax(r)))
    acc = float(np.mean(np.array(preds) == yte))
    details = it._get_ops_details() if hasattr(it, "_get_ops_details") else []
    dtypes = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    ops = sorted({o["op_name"] for o in details})
    float_ops = sorted({o["op_name"] for o in details if o["op_name"] != "DEQUANTIZE"
                        and any(dtypes.get(i) == np.float32 for i in o["outputs"])})
    print(f"tflite ({which}) int8 accuracy: {acc:.4f}  in={inp['dtype'].__name__} "
          f"scale={si:.6g} zp={zi}  out={out['dtype'].__name__} scale={so:.6g} zp={zo}")
    if ops:
        print("tflite ops:", ", ".join(ops))
        print("tflite ops computing in float32:", ", ".join(float_ops) or "none")
    return acc, np.array(logits), (si, zi, so, zo)


def tflm_eval(path, Xte, yte, qparams, n=None):
    try:
        from tflite_micro.python.tflite_micro import runtime
    except Exception as e:  # pragma: no cover
        print("tflite-micro: not available:", e)
        return None
    si, zi, so, zo = qparams
    try:
        it = runtime.Interpreter.from_file(str(path))
    except Exception as e:
        print("tflite-micro: cannot load model:", str(e).splitlines()[0])
        return None
    preds = []
    xs = Xte if n is None else Xte[:n]
    for x in xs:
        q = np.clip(np.round(x / si) + zi, -128, 127).astype(np.int8)[None]
        it.set_input(q, 0)
        it.invoke()
        preds.append(int(np.argmax(it.get_output(0))))
    acc = float(np.mean(np.array(preds) == yte[: len(xs)]))
    print(f"tflite-micro int8 accuracy: {acc:.4f} on {len(xs)} images")
    return acc


def patch_tf2onnx_merge():
    """Make tf2onnx keep the node with the smallest name when it merges duplicated nodes
    (e.g. the identical Tensordot Reshapes in front of the q/k/v Dense layers); by default
    the survivor depends on the run-dependent node order."""
    from tf2onnx.optimizer.merge_duplicated_nodes_optimizer import (
        MergeDuplicatedNodesOptimizer as M,
    )

    if getattr(M, "_sorted_by_name", False):
        return
    orig = M._merge_nodes_that_are_duplicated

    def merge(self, nodes, graph):
        nodes.sort(key=lambda n: n.name)
        return orig(self, nodes, graph)

    M._merge_nodes_that_are_duplicated = merge
    M._sorted_by_name = True


def canonicalize_onnx(model):
    """Deterministic node order and initializer names for a tf2onnx model.

    tf2onnx's node order and the numbering of its folded constants (const_fold_opt__N)
    vary from run to run. Nodes are put in depth-first post-order from the graph outputs;
    initializers are deduplicated by content and named "<first consumer>/in<slot>"."""
    import onnx
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    order, seen = [], set()

    def visit(name):
        stack = [(name, False)]
        while stack:
            t, done = stack.pop()
            n = producer.get(t)
            if n is None:
                continue
            if done:
                if id(n) not in seen:
                    seen.add(id(n))
                    order.append(n)
                continue
            if id(n) in seen:
                continue
            stack.append((t, True))
            stack.extend((i, False) for i in reversed(n.input))

    for o in g.output:
        visit(o.name)
    nodes = []
    for src in order:
        n = onnx.NodeProto()
        n.CopyFrom(src)
        nodes.append(n)
    key = {k: (i.data_type, tuple(i.dims), numpy_helper.to_array(i).tobytes())
           for k, i in inits.items()}
    first, rename, new_inits = {}, {}, []
    for n in nodes:
        for slot, name in enumerate(n.input):
            if name in inits and name not in rename:
                k = key[name]
                if k not in first:
                    first[k] = f"{n.name}/in{slot}"
                    t = onnx.TensorProto()
                    t.CopyFrom(inits[name])
                    t.name = first[k]
                    new_inits.append(t)
                rename[name] = first[k]
        n.input[:] = [rename.get(x, x) for x in n.input]
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(new_inits)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="default",
                    help="tflm: tanh-approximated GELU, *_tflm file names, no fixture")
    args = ap.parse_args()
    activation, stem, write_fixture = VARIANTS[args.variant]

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    Xtr, Xte, ytr, yte = load_split()
    compare_split(Xtr, Xte, yte)

    model = build_model(activation=activation)
    steps = args.epochs * int(np.ceil(len(Xtr) / 32))
    lr = keras.optimizers.schedules.CosineDecay(0.0, steps, warmup_target=3e-3,
                                                warmup_steps=steps // 20)
    model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(Xtr, ytr, batch_size=32, epochs=args.epochs, shuffle=True, verbose=0)
    keras_logits = model.predict(Xte, batch_size=64, verbose=0)
    keras_acc = float(np.mean(keras_logits.argmax(1) == yte))
    print(f"keras float accuracy: {keras_acc:.4f}")

    # Batch-1 graph for both exporters (same weights).
    m1 = build_model(batch=1, activation=activation)
    m1.set_weights(model.get_weights())
    spec = tf.TensorSpec([1, 8, 8], tf.float32, name="x")

    @tf.function(input_signature=[spec])
    def serve(x):
        return {"logits": m1(x, training=False)}

    # ---- ONNX via tf2onnx
    import onnx
    import onnxruntime as ort
    import tf2onnx

    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{stem}.onnx"
    patch_tf2onnx_merge()
    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=17,
                                             output_path=None)
    canonicalize_onnx(proto)
    proto.graph.name = stem
    onnx.checker.check_model(proto)
    onnx.save(proto, str(onnx_path))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    iname, oname = sess.get_inputs()[0].name, sess.get_outputs()[0].name
    ort_logits = np.concatenate([sess.run([oname], {iname: x[None]})[0] for x in Xte])
    ort_acc = float(np.mean(ort_logits.argmax(1) == yte))
    diff = float(np.abs(ort_logits - keras_logits).max())
    ops = sorted({n.op_type for n in proto.graph.node})
    print(f"onnx: input {iname} output {oname}; ort accuracy {ort_acc:.4f}; "
          f"max |ort - keras| = {diff:.2e}")
    print("onnx ops:", ", ".join(ops))
    assert ort_acc == keras_acc and diff < 1e-4, (ort_acc, keras_acc, diff)
    fixture = REPO / "tests" / "fixtures" / "models" / "keras_tf2onnx.onnx"
    if write_fixture:
        fixture.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_path, fixture)

    # ---- int8 TFLite
    def rep():
        for x in Xtr[:200]:
            yield [x[None].astype(np.float32)]

    # The converter cannot calibrate through READ_VARIABLE ops of a non-frozen
    # function (from_concrete_functions / from_saved_model both fail with
    # "read_variable.cc variable != nullptr"), so freeze the variables first.
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    tfl = conv.convert()
    tfl_path = args.out / f"{stem}_int8.tflite"
    tfl_path.write_bytes(tfl)
    print(f"tflite: {len(tfl)} bytes")
    tfl_acc, tfl_logits, qp = tflite_eval(tfl_path, Xte, yte)
    tflm_acc = tflm_eval(tfl_path, Xte, yte, qp)
    if not write_fixture:
        tflm = "n/a" if tflm_acc is None else f"{tflm_acc:.4f}"
        print(f"SUMMARY keras={keras_acc:.4f} onnxruntime={ort_acc:.4f} "
              f"tflite_int8={tfl_acc:.4f} tflite_micro_int8={tflm}")
        return

    model_proto = onnx.load(str(fixture))
    merge_manifest([{
        "name": "keras_tf2onnx", "file": "models/keras_tf2onnx.onnx", "exporter": "tf2onnx",
        "opset": 17, "attention_impl": "explicit", "dynamic_batch": False, "blocks": BLOCKS,
        "heads": HEADS, "head_dim": HEAD_DIM, "seq_len": SEQ, "causal": False, "window": None,
        "global_tokens": 0, "torch_accuracy": None, "ort_accuracy": round(ort_acc, 6),
        "keras_accuracy": round(keras_acc, 6), "tflite_int8_accuracy": round(tfl_acc, 6),
        "ops": model_ops(model_proto),
    }])
    print(f"SUMMARY keras={keras_acc:.4f} onnxruntime={ort_acc:.4f} tflite_int8={tfl_acc:.4f}")


if __name__ == "__main__":
    main()
