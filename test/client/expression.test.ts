import { describe, expect, it } from "vitest";

import { ExpressionMessages, isExpression, scanExpression } from "../../packages/client/src/expression.js";

/** The names an expression references, in source order. */
function names(code: string): string[] {
  return scanExpression(code).references.map((r) => r.name);
}

function problems(code: string): { offset: number; message: string }[] {
  return scanExpression(code).problems;
}

describe("isExpression", () => {
  it("is a string that begins with a dollar sign and a space", () => {
    expect(isExpression("$ secrets.x")).toBe(true);
    expect(isExpression("$secrets.x")).toBe(false);
    expect(isExpression("$\tsecrets.x")).toBe(false);
    expect(isExpression(" $ secrets.x")).toBe(false);
    expect(isExpression("secrets.x")).toBe(false);
  });
});

describe("scanExpression: references in code", () => {
  it("finds attribute and subscript references with the offset of their secrets token", () => {
    const scan = scanExpression(`secrets.api_key + secrets['b'] + secrets["c"]`);
    expect(scan.references).toEqual([
      { name: "api_key", offset: 0 },
      { name: "b", offset: 18 },
      { name: "c", offset: 33 },
    ]);
    expect(scan.problems).toEqual([]);
  });

  it("allows whitespace, line breaks and comments between tokens as Python does", () => {
    expect(names(`secrets . first`)).toEqual(["first"]);
    expect(names(`secrets [ "second" ]`)).toEqual(["second"]);
    expect(names(`secrets[\n  'third'  # the name\n]`)).toEqual(["third"]);
    expect(names(`(secrets\n  .fourth)`)).toEqual(["fourth"]);
  });

  it("joins adjacent string literals in a subscript, as Python does", () => {
    expect(names(`secrets['api' "_key"]`)).toEqual(["api_key"]);
  });

  it("decodes escapes in a subscript literal", () => {
    expect(names(`secrets['a\\x62c']`)).toEqual(["abc"]);
    expect(names(`secrets[u'key']`)).toEqual(["key"]);
    expect(names(`secrets[R'raw_key']`)).toEqual(["raw_key"]);
  });

  it("finds references inside calls, indexing and comprehensions", () => {
    expect(names(`str(secrets.a)[0:secrets.b] if x else [secrets.c for _ in y]`)).toEqual(["a", "b", "c"]);
  });

  it("compares identifiers after NFKC normalization, as Python does", () => {
    expect(names(`ｓｅｃｒｅｔｓ.ｋｅｙ`)).toEqual(["key"]);
  });

  it("takes only `secrets` as a whole token, not as part or attribute of something else", () => {
    expect(names(`mysecrets.x + secrets_manager.y + _secrets.z`)).toEqual([]);
    expect(names(`a.secrets.x + a . secrets.y + a[0].secrets['z']`)).toEqual([]);
    expect(problems(`mysecrets.x + a.secrets.y`)).toEqual([]);
  });

  it("reports a name after `secrets.` even when it is not an identifier, so the name rule can reject it", () => {
    expect(names(`secrets.1bad`)).toEqual(["1bad"]);
  });
});

describe("scanExpression: string literals are text", () => {
  it("finds nothing inside plain, single- and triple-quoted strings", () => {
    expect(names(`'secrets.a' + "secrets['b']" + '''secrets.c''' + """secrets["d"]"""`)).toEqual([]);
  });

  it("handles escaped quotes and backslashes", () => {
    expect(names(`'it\\'s secrets.a' + secrets.b`)).toEqual(["b"]);
    expect(names(`"say \\"secrets.a\\"" + secrets.b`)).toEqual(["b"]);
    expect(names(`'\\\\' + secrets.b`)).toEqual(["b"]);
  });

  it("ends triple-quoted strings only at three quotes, across lines", () => {
    const code = `'''first line\nsecrets.a and ' and '' still text\n''' + secrets.b + """\nsecrets.c"""`;
    expect(names(code)).toEqual(["b"]);
    expect(problems(code)).toEqual([]);
  });

  it("keeps backslashes in raw strings, which still cannot end in an odd backslash before the quote", () => {
    // r'\' does not end at its second quote: the string runs on to the last quote.
    expect(names(`r'\\' + secrets.a'`)).toEqual([]);
    expect(names(`r'\\\\' + secrets.a`)).toEqual(["a"]);
    expect(names(`rb"C:\\path\\" + secrets.a"`)).toEqual([]);
    expect(names(`Rb'\\d+' + secrets.a`)).toEqual(["a"]);
  });

  it("accepts every prefix in any case", () => {
    for (const prefix of ["r", "b", "u", "R", "B", "U", "rb", "bR", "Br", "RB"]) {
      expect(names(`${prefix}'secrets.a' + secrets.b`), prefix).toEqual(["b"]);
    }
  });

  it("treats an identifier before a quote that is not a prefix as an identifier", () => {
    // Not valid Python; what matters is that the quote still opens a string.
    expect(names(`x'secrets.a'`)).toEqual([]);
  });
});

describe("scanExpression: f-strings", () => {
  it("treats replacement fields as code and the rest as text", () => {
    expect(names(`f'key={secrets.a} and secrets.b'`)).toEqual(["a"]);
    expect(names(`F"{secrets['a']}"`)).toEqual(["a"]);
  });

  it("treats doubled braces as literal braces", () => {
    expect(names(`f'{{secrets.a}}'`)).toEqual([]);
    expect(names(`f'{{{secrets.a}}}'`)).toEqual(["a"]);
    expect(names(`f'{{}} {secrets.a} {{secrets.b}}'`)).toEqual(["a"]);
    expect(problems(`f'{{secrets.a}}'`)).toEqual([]);
  });

  it("scans nested f-strings of the other quote kind, and of the same kind (Python 3.12)", () => {
    expect(names(`f"{f'{secrets.inner}' + secrets.outer}"`)).toEqual(["inner", "outer"]);
    expect(names(`f"{f'{{secrets.literal}}'}"`)).toEqual([]);
    expect(names(`f'{secrets['same_quote']}'`)).toEqual(["same_quote"]);
    expect(names(`f'''{f"{f'{secrets.deep}'}"}'''`)).toEqual(["deep"]);
  });

  it("finds nested brackets and strings in a field without ending the field early", () => {
    expect(names(`f'{ {"k": secrets.a}["k"] } {d["}"]} {secrets.b}'`)).toEqual(["a", "b"]);
  });

  it("treats a conversion and a format spec as text, except nested fields in the spec", () => {
    expect(names(`f'{x!r:secrets.a}'`)).toEqual([]);
    expect(names(`f'{x:>{secrets.width}}'`)).toEqual(["width"]);
    expect(names(`f'{x!s:{secrets.fill}^{secrets.width}} {secrets.c}'`)).toEqual(["fill", "width", "c"]);
    expect(names(`f'{a != secrets.b}'`)).toEqual(["b"]);
  });

  it("scans raw f-strings: a backslash does not hide a brace", () => {
    expect(names(`rf'\\{secrets.a}'`)).toEqual(["a"]);
    expect(names(`fR'C:\\dir\\{secrets.b}'`)).toEqual(["b"]);
  });

  it("treats \\N{NAME} in a non-raw f-string as a character, not a field", () => {
    expect(names(`f'\\N{EM DASH} {secrets.a}'`)).toEqual(["a"]);
    expect(problems(`f'\\N{EM DASH}'`)).toEqual([]);
  });

  it("scans t-strings like f-strings", () => {
    expect(names(`t'{secrets.a}'`)).toEqual(["a"]);
  });

  it("spans lines in triple-quoted f-strings", () => {
    expect(names(`f'''\nline {secrets.a}\n{\n  secrets.b\n}\n'''`)).toEqual(["a", "b"]);
  });
});

describe("scanExpression: comments", () => {
  it("treats a comment as text to the end of its line", () => {
    expect(names(`secrets.a  # secrets.b`)).toEqual(["a"]);
    expect(names(`(secrets.a  # it's secrets.b\n + secrets.c)`)).toEqual(["a", "c"]);
    expect(problems(`secrets.a  # it's`)).toEqual([]);
  });

  it("does not treat # inside a string as a comment", () => {
    expect(names(`'#' + secrets.a`)).toEqual(["a"]);
  });
});

describe("scanExpression: references that cannot be resolved statically", () => {
  it("reports a non-literal subscript", () => {
    expect(problems(`secrets[name_var]`)).toEqual([{ offset: 0, message: ExpressionMessages.dynamicSubscript }]);
    expect(problems(`x + secrets[f'key_{n}']`)).toEqual([{ offset: 4, message: ExpressionMessages.dynamicSubscript }]);
    expect(problems(`secrets['a' + 'b']`)).toEqual([{ offset: 0, message: ExpressionMessages.dynamicSubscript }]);
    expect(problems(`secrets[b'bytes']`)).toEqual([{ offset: 0, message: ExpressionMessages.dynamicSubscript }]);
    expect(names(`secrets[name_var]`)).toEqual([]);
  });

  it("still scans a dynamic subscript's contents", () => {
    const scan = scanExpression(`secrets[secrets.key_name]`);
    expect(scan.references).toEqual([{ name: "key_name", offset: 8 }]);
    expect(scan.problems).toEqual([{ offset: 0, message: ExpressionMessages.dynamicSubscript }]);
  });

  it("reports `secrets` used as a whole", () => {
    expect(problems(`len(secrets)`)).toEqual([{ offset: 4, message: ExpressionMessages.wholeSecrets }]);
    expect(problems(`getattr(secrets, n)`)).toEqual([{ offset: 8, message: ExpressionMessages.wholeSecrets }]);
  });

  it("does not report `secrets` as a keyword argument's name", () => {
    expect(problems(`f(secrets=1)`)).toEqual([]);
    expect(problems(`secrets == x`)).toEqual([{ offset: 0, message: ExpressionMessages.wholeSecrets }]);
  });

  it("reports `secrets.` without a name", () => {
    expect(problems(`secrets. + 1`)).toEqual([{ offset: 0, message: ExpressionMessages.missingName }]);
  });
});

describe("scanExpression: malformed code", () => {
  it("reports an unterminated string where it opens and keeps what came before", () => {
    const scan = scanExpression(`secrets.a + "abc`);
    expect(scan.references).toEqual([{ name: "a", offset: 0 }]);
    expect(scan.problems).toEqual([{ offset: 12, message: ExpressionMessages.unterminatedString }]);
  });

  it("reports a single-quoted string broken by a line break", () => {
    expect(problems(`'abc\n' + secrets.a`)).toEqual([{ offset: 0, message: ExpressionMessages.unterminatedString }]);
  });

  it("reports an unterminated triple-quoted string and a string ending in a backslash", () => {
    expect(problems(`x + '''abc`)).toEqual([{ offset: 4, message: ExpressionMessages.unterminatedTripleString }]);
    expect(problems(`'abc\\'`)).toEqual([{ offset: 0, message: ExpressionMessages.unterminatedString }]);
    expect(problems(`r'abc\\'`)).toEqual([{ offset: 0, message: ExpressionMessages.unterminatedString }]);
  });

  it("reports an unterminated f-string and an unclosed field", () => {
    expect(problems(`f'{secrets.a}`)).toEqual([{ offset: 0, message: ExpressionMessages.unterminatedString }]);
    expect(problems(`f'{secrets.a'`)).toEqual([{ offset: 2, message: ExpressionMessages.fieldNotClosed }]);
    expect(problems(`f"abc {x"`)).toEqual([{ offset: 6, message: ExpressionMessages.fieldNotClosed }]);
    expect(problems(`f'{x:>10'`)).toEqual([{ offset: 2, message: ExpressionMessages.fieldNotClosed }]);
    expect(problems(`f'{x`)).toEqual([{ offset: 2, message: ExpressionMessages.fieldNotClosed }]);
  });

  it("reports a single closing brace in an f-string and goes on", () => {
    const scan = scanExpression(`f'a } b {secrets.x}'`);
    expect(scan.problems).toEqual([{ offset: 4, message: ExpressionMessages.singleCloseBrace }]);
    expect(scan.references.map((r) => r.name)).toEqual(["x"]);
  });

  it("reports nesting beyond any real expression instead of overflowing the stack", () => {
    let deep = "secrets.bottom";
    for (let i = 0; i < 150; i += 1) deep = `f'{${deep}}'`;
    expect(problems(deep)).toEqual([{ offset: expect.any(Number), message: ExpressionMessages.tooDeep }]);

    let shallow = "secrets.bottom";
    for (let i = 0; i < 20; i += 1) shallow = `f'{${shallow}}'`;
    expect(scanExpression(shallow)).toEqual({ references: [{ name: "bottom", offset: 60 }], problems: [] });
  });
});
