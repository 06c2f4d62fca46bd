//! Builds the hip-attn Zig example (Zig 0.17). Zig no longer has @cImport: the build translates the C header
//! into a module with addTranslateC, and the sources import it as "c".
//!
//!   zig build run  [-Dlibdir=DIR]   runs the example (HIP_ATTN_BACKEND=cpu|cuda, default cpu)
//!   zig build test [-Dlibdir=DIR]   runs the test (prefill and decode on the CPU backend, checked against dense)
//!
//! DIR holds libhip_attn.so and its SONAME link libhip_attn.so.1: target/release after `make lib` (the default),
//! or PREFIX/lib of an installed copy.
const std = @import("std");

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    const libdir = b.option(std.Build.LazyPath, "libdir", "directory of libhip_attn.so (default ../../target/release)") orelse
        b.path("../../target/release");

    const header = b.addTranslateC(.{
        .root_source_file = b.path("../../include/hip_attn.h"),
        .target = target,
        .optimize = optimize,
    });
    const c = header.createModule();

    // One module for the example and its test; it links libhip_attn (and libc, for dlopen and aligned_alloc).
    const mod = b.createModule(.{
        .root_source_file = b.path("src/main.zig"),
        .target = target,
        .optimize = optimize,
        .link_libc = true,
        .imports = &.{.{ .name = "c", .module = c }},
    });
    mod.addLibraryPath(libdir);
    // So that the example and the test run without LD_LIBRARY_PATH. The default is relative, which the loader
    // resolves from the working directory: right for `zig build run/test` here; pass an absolute -Dlibdir
    // for a binary that runs from anywhere.
    mod.addRPath(libdir);
    mod.linkSystemLibrary("hip_attn", .{});

    const exe = b.addExecutable(.{ .name = "hip_attn_example", .root_module = mod });
    b.installArtifact(exe);
    const run = b.addRunArtifact(exe);
    b.step("run", "Run the example").dependOn(&run.step);

    const tests = b.addTest(.{ .root_module = mod });
    b.step("test", "Run the test").dependOn(&b.addRunArtifact(tests).step);
}
