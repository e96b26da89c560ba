const a = (await import('module')).createRequire(import.meta.url)('./build/Release/virtiokit.node');
a.init((c,m,e)=>{const x=new Error(m); x.code=c; return x;}, ()=>undefined);
const dst = new ArrayBuffer(1<<20); const src = new ArrayBuffer(1<<20);
const bufs = [dst, src]; const N=64;
const ops = new Float64Array(N*5); for (let i=0;i<N;i++) ops.set([0,16+i*64,1,i*64,64], i*5);
const it = +process.argv[2];
for (let i=0;i<it;i++) a.copyBatch(bufs, ops, N);
