/**
 * A one-node ONNX model, com.microsoft MultiHeadAttention on float32 q, k, v of shape
 * [batch, seq, heads * headDim] (psa's `bnhd` layout), `unidirectional` for causal, encoded
 * directly as protobuf (the fields of onnx.proto3 it needs) so the bench needs no ONNX tooling.
 */

/** Protobuf wire format: varints, and length-delimited fields holding strings or messages. */
class Writer {
  private bytes: number[] = [];

  private varint(v: number): void {
    let x = BigInt(v);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x) b |= 0x80;
      this.bytes.push(b);
    } while (x);
  }

  int(field: number, v: number): this {
    this.varint(field << 3);
    this.varint(v);
    return this;
  }

  bytesField(field: number, data: Uint8Array): this {
    this.varint((field << 3) | 2);
    this.varint(data.length);
    for (const b of data) this.bytes.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytesField(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: Writer) => void): this {
    const w = new Writer();
    build(w);
    return this.bytesField(field, w.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

const FLOAT = 1; // TensorProto.DataType
const ATTRIBUTE_INT = 2; // AttributeProto.AttributeType

function valueInfo(w: Writer, name: string, dims: number[]): void {
  w.string(1, name).message(2, (type) =>
    type.message(1, (tensor) => tensor.int(1, FLOAT).message(2, (shape) => dims.forEach((d) => shape.message(1, (dim) => dim.int(1, d))))),
  );
}

export function multiHeadAttentionModel(batch: number, seq: number, heads: number, headDim: number, causal: boolean): Uint8Array {
  const dims = [batch, seq, heads * headDim];
  return new Writer()
    .int(1, 8) // ir_version
    .message(8, (o) => o.string(1, '').int(2, 17))
    .message(8, (o) => o.string(1, 'com.microsoft').int(2, 1))
    .message(7, (g) => {
      g.message(1, (n) => {
        n.string(1, 'q').string(1, 'k').string(1, 'v').string(2, 'out').string(3, 'mha').string(4, 'MultiHeadAttention');
        n.message(5, (a) => a.string(1, 'num_heads').int(3, heads).int(20, ATTRIBUTE_INT));
        n.message(5, (a) => a.string(1, 'unidirectional').int(3, causal ? 1 : 0).int(20, ATTRIBUTE_INT));
        n.string(7, 'com.microsoft');
      });
      g.string(2, 'psa-bench-mha');
      for (const name of ['q', 'k', 'v']) g.message(11, (w) => valueInfo(w, name, dims));
      g.message(12, (w) => valueInfo(w, 'out', dims));
    })
    .finish();
}
