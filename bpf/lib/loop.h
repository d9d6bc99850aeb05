/* Loops the verifier checks once, whatever their count: bpf_loop() with a callback.
 *
 * bcc neither links a program's subprograms nor tells a static function's address, so a
 * callback is a function of its own (non-static: bcc compiles it into a section of its own)
 * named in LOOP_CALLBACKS, and a program names it by its number there (LOOP_CALLBACK: a
 * BPF_PSEUDO_FUNC immediate). vswitchd/datapath/compiler.py appends each callback a program
 * names to its instructions and points the immediate at it; the loader gives the kernel the
 * BTF function records a program with subprograms needs.
 *
 * bcc also rewrites every parameter of such a function but the first (as a kprobe's, read
 * from the first's registers), so a callback declares one, unused, and takes bpf_loop's
 * (index, state) from r1 and r2 with LOOP_ARGS, before anything else runs (compiler.py checks
 * that its first two instructions read them). */
#ifndef VSW_LOOP_H
#define VSW_LOOP_H

/* X(ID, number, "function") */
#define LOOP_CALLBACKS(X)					\
	X(LOOP_FLOOD_TC, 1, "flood_member_tc")			\
	X(LOOP_FLOOD_XDP, 2, "flood_member_xdp")

#define VSW_LOOP_ENUM(id, value, fn) id = value,
enum loop_callback {
	LOOP_CALLBACKS(VSW_LOOP_ENUM)
};
#undef VSW_LOOP_ENUM

#define LOOP_CALLBACK(id) ((void *)bpf_pseudo_fd(BPF_PSEUDO_FUNC, (id)))

/* A callback's first statement: index and state as bpf_loop passed them. (bcc's front end
 * knows no BPF register names for a clobber list; compiler.py checks that neither output was
 * put in r1 or r2.) */
#define LOOP_ARGS(index, state)							\
	asm volatile("%0 = r1\n\t%1 = r2" : "=&r"(index), "=&r"(state))

#endif
