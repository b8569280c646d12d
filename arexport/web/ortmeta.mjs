// The metadata_props of an onnxruntime ORT-format model file, read from its bytes (no onnxruntime needed).
//
//   readOrtMetadata(bytes) -> {key: value}   bytes: Uint8Array, ArrayBuffer or Node Buffer of a .ort file.
//   isOrtFile(bytes) -> boolean              whether the bytes carry the ORT file identifier.
//
// Throws Error (one line: what is wrong; what to do) for bytes that are not an ORT file or are cut short.
//
// The file is a FlatBuffer (schema: onnxruntime/core/flatbuffers/schema/ort.fbs) with file identifier "ORTM":
//   root table InferenceSession { ort_version: string (field 0); model: Model (field 1); ... }
//   table Model { ...; metadata_props: [StringStringEntry] (field 9) }
//   table StringStringEntry { key: string (field 0); value: string (field 1) }
// FlatBuffers layout used here (all little-endian): the file starts with a u32 offset to the root table; a
// table starts with an i32 back to its vtable (vtable = table - i32); a vtable is u16 vtable size, u16 table
// size, then one u16 per field: the field's offset inside the table, 0 when absent. A reference field holds
// a u32 offset from the field's own position; a string is u32 length then UTF-8 bytes; a vector of tables is
// u32 count then one u32 offset per element, each from the element's own position.

const FILE_IDENTIFIER = "ORTM";
const SESSION_MODEL = 1;        // InferenceSession.model
const MODEL_METADATA_PROPS = 9; // Model.metadata_props
const ENTRY_KEY = 0;            // StringStringEntry.key
const ENTRY_VALUE = 1;          // StringStringEntry.value

function asBytes(bytes) {
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new Error("readOrtMetadata takes a Uint8Array or ArrayBuffer of the .ort file's bytes");
}

export function isOrtFile(bytes) {
  const b = asBytes(bytes);
  return b.length >= 8 && String.fromCharCode(b[4], b[5], b[6], b[7]) === FILE_IDENTIFIER;
}

class Reader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.utf8 = new TextDecoder("utf-8", { fatal: true });
  }

  check(pos, size) {
    if (!(pos >= 0 && pos + size <= this.bytes.length)) {
      throw new Error(`the ORT file is cut short or corrupt (offset ${pos} past its ${this.bytes.length} bytes); ` +
                      "convert the model again with `arexport ort`");
    }
  }

  u16(pos) { this.check(pos, 2); return this.view.getUint16(pos, true); }
  u32(pos) { this.check(pos, 4); return this.view.getUint32(pos, true); }
  i32(pos) { this.check(pos, 4); return this.view.getInt32(pos, true); }

  // The position of field `index` of the table at `table`, or -1 when the field is absent.
  field(table, index) {
    const vtable = table - this.i32(table);
    const slot = 4 + 2 * index;
    if (slot + 2 > this.u16(vtable)) return -1;
    const offset = this.u16(vtable + slot);
    return offset === 0 ? -1 : table + offset;
  }

  // The table, string or vector a reference field at `pos` points to.
  deref(pos) { return pos + this.u32(pos); }

  string(pos) {
    const length = this.u32(pos);
    this.check(pos + 4, length);
    return this.utf8.decode(this.bytes.subarray(pos + 4, pos + 4 + length));
  }

  // The tables of the vector at `pos`.
  tables(pos) {
    const count = this.u32(pos);
    this.check(pos + 4, 4 * count);
    return Array.from({ length: count }, (_, i) => this.deref(pos + 4 + 4 * i));
  }
}

export function readOrtMetadata(bytes) {
  const b = asBytes(bytes);
  if (!isOrtFile(b)) {
    throw new Error('these bytes are not an ORT-format model (no "ORTM" file identifier); give the .ort file ' +
                    "written by `arexport ort`");
  }
  const r = new Reader(b);
  const session = r.deref(0);
  const modelField = r.field(session, SESSION_MODEL);
  if (modelField < 0) throw new Error("the ORT file holds no model; convert the model again with `arexport ort`");
  const model = r.deref(modelField);
  const propsField = r.field(model, MODEL_METADATA_PROPS);
  const meta = {};
  if (propsField < 0) return meta;
  for (const entry of r.tables(r.deref(propsField))) {
    const key = r.field(entry, ENTRY_KEY);
    const value = r.field(entry, ENTRY_VALUE);
    if (key < 0) throw new Error("the ORT file has a metadata entry without a key; convert the model again with `arexport ort`");
    meta[r.string(r.deref(key))] = value < 0 ? "" : r.string(r.deref(value));
  }
  return meta;
}
