const a = (await import('module')).createRequire(import.meta.url)('./build/Release/virtiokit.node');
a.init((c,m,e)=>{const x=new Error(m); x.code=c; return x;}, ()=>undefined);
const dst = new ArrayBuffer(1<<20); const src = new ArrayBuffer(1<<20);
const u8d = new Uint8Array(dst), v = new Uint8Array(src, 0, 64);
const [mode, n] = [process.argv[2], +process.argv[3]];
if (mode === 'set') for (let i=0;i<n;i++) u8d.set(v, 16 + (i & 63) * 64);
if (mode === 'empty') for (let i=0;i<n;i++) a.isMapped();
if (mode === 'copy') for (let i=0;i<n;i++) a.copy(dst, 16 + (i & 63) * 64, src, 0, 64);
