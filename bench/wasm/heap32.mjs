// The 32-bit heap runner's Node side (bench/heap32.py): MicroPython's webassembly port (a 32-bit
// build: 4-byte object slots, 16-byte GC blocks) with the host's folders copied into its in-memory
// file system, a list of Python steps run one by one, and the live heap read between them.
//
// Why the heap is read here and not by the steps: in this port gc.collect() takes effect only when
// control returns to JavaScript (the C stack cannot be scanned while Python runs), so each reading is
// a collect in one call and gc.mem_alloc() in the next.
//
// Usage: node heap32.mjs PACKAGE_DIR JOB.json. The job: {"heapsize": bytes, "copy": [[host_dir,
// fs_dir], ...], "cwd": fs_dir, "path": [fs_dir, ...], "steps": [[name, python_source], ...]}.
// Prints the steps' own output as "py|<line>" and one "H32 {json}" line per reading:
// {"step": name, "alloc": bytes} or {"step": name, "error": traceback}; exit 1 after an error.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, jobPath] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobPath, "utf8"));
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const { loadMicroPython } = await import(pathToFileURL(join(pkgDir, pkg.main)).href);

const mp = await loadMicroPython({
  heapsize: job.heapsize,
  linebuffer: true,
  stdout: (line) => process.stdout.write("py|" + line + "\n"),
  stderr: (line) => process.stdout.write("py|" + line + "\n"),
});

function copyTree(hostDir, fsDir) {
  mp.FS.mkdirTree(fsDir);
  for (const name of readdirSync(hostDir)) {
    const src = join(hostDir, name);
    const dst = fsDir + "/" + name;
    if (statSync(src).isDirectory()) copyTree(src, dst);
    else mp.FS.writeFile(dst, readFileSync(src));
  }
}

for (const [hostDir, fsDir] of job.copy) copyTree(hostDir, fsDir);

function report(obj) {
  process.stdout.write("H32 " + JSON.stringify(obj) + "\n");
}

// The runner's own names live in __main__ from the start, so later readings do not grow its dict.
// os.getenv does not exist in this port: every variable reads as unset (no simulator control port).
mp.runPython(
  "import gc, os, sys\n" +
    "_h32 = 0\n" +
    "os.getenv = lambda key, default=None: default\n" +
    "sys.path[:] = " + JSON.stringify(job.path) + "\n" +
    "os.chdir(" + JSON.stringify(job.cwd) + ")\n",
);

function liveHeap() {
  mp.runPython("gc.collect()");
  mp.runPython("_h32 = gc.mem_alloc()");
  return mp.globals.get("_h32");
}

for (const [name, source] of job.steps) {
  try {
    mp.runPython(source);
  } catch (err) {
    report({ step: name, error: String(err && err.message ? err.message : err) });
    process.exit(1);
  }
  report({ step: name, alloc: liveHeap() });
}
