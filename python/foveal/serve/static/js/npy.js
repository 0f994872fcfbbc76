// Reader for the .npy files /v1/predict returns (format=npy): little-endian float32, C order, 2-D.

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/** Parse a float32 (H, W) .npy buffer → {data: Float32Array, height, width}. Throws Error on anything else. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw new Error("the service did not return a .npy map");
  }
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr'\s*:\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shape = /'shape'\s*:\s*\((\d+)\s*,\s*(\d+)\s*,?\s*\)/.exec(header);
  if (!descr || descr[1] !== "<f4" || !fortran || fortran[1] !== "False" || !shape) {
    throw new Error(`unexpected .npy header ${header.trim()}`);
  }
  const height = Number(shape[1]);
  const width = Number(shape[2]);
  const offset = start + headerLen;
  if (buffer.byteLength - offset !== height * width * 4) {
    throw new Error(`truncated .npy map: expected ${height * width * 4} data bytes`);
  }
  // Copy when the data offset is not 4-aligned (numpy pads headers to 64 bytes, so it normally is).
  const data = offset % 4 === 0 ? new Float32Array(buffer, offset, height * width)
    : new Float32Array(buffer.slice(offset));
  return { data, height, width };
}
