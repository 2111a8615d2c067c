// A small JSON Schema check, so the run panel can point at a bad input before sending it.
// It covers what function schemas mostly use (type, required, properties,
// additionalProperties, items, enum, const, minimum/maximum, minLength/maxLength); the
// server checks the whole of the schema again and has the last word.

const TYPES = {
  object: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  array: Array.isArray,
  string: (v) => typeof v === "string",
  number: (v) => typeof v === "number",
  integer: Number.isInteger,
  boolean: (v) => typeof v === "boolean",
  null: (v) => v === null,
};

/** The problems of `value` against `schema`: `[{path, message}]`, empty when it fits. */
export function check(schema, value, path = "") {
  if (schema === true || schema === undefined || schema === null) return [];
  if (schema === false) return [{ path, message: "no value is allowed here" }];
  const out = [];
  const at = (p) => `${path}/${p}`;
  if (schema.type) {
    const types = [].concat(schema.type);
    if (!types.some((t) => TYPES[t] && TYPES[t](value))) {
      return [{ path, message: `should be ${types.join(" or ")}` }];
    }
  }
  if (schema.enum && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    out.push({ path, message: `should be one of ${JSON.stringify(schema.enum)}` });
  }
  if ("const" in schema && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    out.push({ path, message: `should be ${JSON.stringify(schema.const)}` });
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) out.push({ path, message: `should be ≥ ${schema.minimum}` });
    if (schema.maximum !== undefined && value > schema.maximum) out.push({ path, message: `should be ≤ ${schema.maximum}` });
  }
  if (typeof value === "string") {
    const n = [...value].length;
    if (schema.minLength !== undefined && n < schema.minLength) out.push({ path, message: `should have at least ${schema.minLength} characters` });
    if (schema.maxLength !== undefined && n > schema.maxLength) out.push({ path, message: `should have at most ${schema.maxLength} characters` });
  }
  if (TYPES.object(value)) {
    for (const r of schema.required || []) {
      if (!(r in value)) out.push({ path, message: `"${r}" is a required property` });
    }
    const props = schema.properties || {};
    for (const [k, v] of Object.entries(value)) {
      if (k in props) out.push(...check(props[k], v, at(k)));
      else if (schema.additionalProperties === false) out.push({ path: at(k), message: "is not an allowed property" });
      else if (typeof schema.additionalProperties === "object") out.push(...check(schema.additionalProperties, v, at(k)));
    }
  }
  if (Array.isArray(value) && schema.items && typeof schema.items === "object") {
    value.forEach((v, i) => out.push(...check(schema.items, v, at(i))));
  }
  return out;
}
