// Enrollment code normalisation and check, the same rules as internal/codes (Parse): case,
// hyphens and whitespace are ignored, I and L read as 1, O reads as 0, and the 16th symbol is
// the Luhn mod 32 check of the first 15 over Crockford's base32 alphabet. Problems are
// reported in the same order as the server: the first bad character, then the length, then the
// check symbol, so the page and the API never disagree about what was typed.
"use strict";

const EnrollCode = (() => {
  const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  const payloadLen = 15;
  const codeLen = 16;

  // Go's unicode.IsSpace, which the server uses: JavaScript's \s differs (it has U+FEFF and
  // lacks U+0085), and a pasted code must be read the same on both sides.
  const spaces = new Set([
    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680,
    0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a,
    0x2028, 0x2029, 0x202f, 0x205f, 0x3000,
  ]);

  function symbolValue(ch) {
    const c = ch.toUpperCase();
    if (ch.length !== 1 || ch.charCodeAt(0) >= 0x80) {
      return -1; // non-ASCII letters are never folded, as on the server
    }
    if (c === "I" || c === "L") return 1;
    if (c === "O") return 0;
    return alphabet.indexOf(c);
  }

  function checkValue(payload) {
    let sum = 0;
    let factor = 2;
    for (let i = payload.length - 1; i >= 0; i--) {
      const addend = factor * payload[i];
      sum += Math.floor(addend / 32) + (addend % 32);
      factor = 3 - factor;
    }
    return (32 - (sum % 32)) % 32;
  }

  // parse returns {ok: true, code: "XXXX-XXXX-XXXX-XXXX"} or {ok: false, error: "character" |
  // "length" | "check", count: symbols seen, character: the offending character}.
  function parse(input) {
    const values = [];
    for (const ch of String(input)) {
      const v = symbolValue(ch);
      if (v >= 0) {
        if (values.length === codeLen) {
          return { ok: false, error: "length", count: codeLen + 1 };
        }
        values.push(v);
        continue;
      }
      if (ch === "-" || spaces.has(ch.codePointAt(0))) {
        continue;
      }
      return { ok: false, error: "character", character: ch };
    }
    if (values.length !== codeLen) {
      return { ok: false, error: "length", count: values.length };
    }
    if (checkValue(values.slice(0, payloadLen)) !== values[payloadLen]) {
      return { ok: false, error: "check" };
    }
    const symbols = values.map((v) => alphabet[v]).join("");
    return { ok: true, code: symbols.match(/.{4}/g).join("-") };
  }

  // symbolCount counts what would be code symbols, so the page can check as soon as a whole
  // code has been typed.
  function symbolCount(input) {
    let n = 0;
    for (const ch of String(input)) {
      if (symbolValue(ch) >= 0) n++;
    }
    return n;
  }

  return Object.freeze({ parse, symbolCount });
})();
