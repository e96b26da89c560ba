/**
 * The per-queue copies of the fast loops (src/queue/specialize.ts) are compiled from each
 * factory's own text, where module bindings do not exist: every module-level name a factory uses
 * must be handed to specialize() as a numeric constant. A name forgotten there would only fail when
 * its branch runs, so this test finds them statically with the TypeScript checker: for each
 * `static make_*` factory in the queue sources, the module-level values it refers to must equal
 * the constants listed in its specialize() call, and the factory declares no function but the
 * loop it returns.
 */
import { describe, expect, it } from 'vitest';
import ts from 'typescript';
import { fileURLToPath } from 'node:url';

const files = ['split/device.ts', 'split/driver.ts', 'packed/device.ts', 'packed/driver.ts'].map((f) =>
  fileURLToPath(new URL(`../../src/queue/${f}`, import.meta.url)),
);

function isTypePosition(n: ts.Node): boolean {
  for (let p: ts.Node | undefined = n.parent; p !== undefined; p = p.parent) {
    if (ts.isTypeNode(p) || ts.isTypeReferenceNode(p) || ts.isExpressionWithTypeArguments(p)) return true;
    if (ts.isBlock(p) || ts.isSourceFile(p)) return false;
  }
  return false;
}

/** Module-level value names used inside `node` (declared at the top level of `sf` or imported). */
function moduleNamesUsed(node: ts.Node, sf: ts.SourceFile, checker: ts.TypeChecker): Set<string> {
  const out = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n) && !isTypePosition(n)) {
      const parent = n.parent;
      const isPropName = (ts.isPropertyAccessExpression(parent) && parent.name === n) || (ts.isPropertyAssignment(parent) && parent.name === n);
      if (!isPropName) {
        const sym = checker.getSymbolAtLocation(n);
        const decl = sym?.declarations?.[0];
        if (decl !== undefined && decl.getSourceFile() === sf) {
          const top = ts.isImportSpecifier(decl) || ts.isImportClause(decl) || (ts.isVariableDeclaration(decl) && ts.isSourceFile(decl.parent.parent.parent)) || (ts.isFunctionDeclaration(decl) && ts.isSourceFile(decl.parent)) || (ts.isClassDeclaration(decl) && ts.isSourceFile(decl.parent));
          if (top) out.add(n.text);
        } else if (decl !== undefined && ts.isImportSpecifier(decl)) {
          out.add(n.text);
        }
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(node);
  return out;
}

describe('specialised fast loops: no module binding is left out of a specialize() call', () => {
  const program = ts.createProgram(files, { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, strict: true, noEmit: true });
  const checker = program.getTypeChecker();
  for (const file of files) {
    const sf = program.getSourceFile(file)!;
    const factories = new Map<string, ts.MethodDeclaration>();
    const passed = new Map<string, string[]>();
    const walk = (n: ts.Node): void => {
      if (ts.isMethodDeclaration(n) && n.modifiers?.some((m) => m.kind === ts.SyntaxKind.StaticKeyword) && ts.isIdentifier(n.name) && n.name.text.startsWith('make_')) {
        factories.set(n.name.text, n);
      }
      if (ts.isCallExpression(n) && ts.isIdentifier(n.expression) && n.expression.text === 'specialize') {
        const [fn, consts] = n.arguments;
        if (fn !== undefined && ts.isPropertyAccessExpression(fn) && consts !== undefined && ts.isObjectLiteralExpression(consts)) {
          passed.set(fn.name.text, consts.properties.map((p) => (p.name !== undefined && ts.isIdentifier(p.name) ? p.name.text : '?')));
        }
      }
      ts.forEachChild(n, walk);
    };
    walk(sf);
    const rel = file.slice(file.indexOf('src/queue/'));
    it(`${rel}: every factory is specialised, with exactly the module constants it uses`, () => {
      expect(factories.size).toBeGreaterThan(0);
      for (const [name, decl] of factories) {
        const used = [...moduleNamesUsed(decl.body!, sf, checker)].sort();
        expect(passed.has(name), `${rel}: ${name} has no specialize() call`).toBe(true);
        expect([...passed.get(name)!].sort(), `${rel}: ${name}`).toEqual(used);
        // One function inside a factory: the hot loop it returns, with none nested in it. A named
        // inner function gets a transpiler helper (esbuild keepNames: `__name`) the copy lacks.
        const fns: ts.Node[] = [];
        const findFns = (n: ts.Node): void => {
          if (ts.isFunctionLike(n)) fns.push(n);
          ts.forEachChild(n, findFns);
        };
        ts.forEachChild(decl.body!, findFns);
        expect(fns.length, `${rel}: ${name} declares functions besides its returned loop`).toBe(1);
        expect(ts.isArrowFunction(fns[0]!) && ts.isReturnStatement(fns[0]!.parent), `${rel}: ${name} must return its loop as an arrow function`).toBe(true);
      }
    });
  }
});
