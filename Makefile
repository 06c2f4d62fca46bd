# Convenience targets around cargo. The library's SONAME is libhip_attn.so.$(ABI), so the build directory gets
# that link too, and programs linked against it run with LD_LIBRARY_PATH pointing there.
ABI := 1
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
PROFILE ?= release
CARGO ?= cargo
TARGET_DIR ?= target
# cargo puts the dev profile's output in target/debug, every other profile's in target/<profile>.
LIBDIR ?= $(TARGET_DIR)/$(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
CC ?= cc
CFLAGS ?= -std=c11 -Wall -Wextra -Werror -O2

# GNU-style install locations; DESTDIR is for staged installs (packaging) and is not written into the .pc file.
PREFIX ?= /usr/local
DESTDIR ?=
libdir ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
# The release profile keeps line tables (backtraces, profilers), most of the built objects' size: installed
# copies are stripped (the .so keeps its exported symbols). KEEP_DEBUG=1 installs them as built.
STRIP ?= strip
KEEP_DEBUG ?=

.PHONY: lib example install install-only example-cpp example-cpp-sharded example-go example-zig
lib:
	$(CARGO) build --profile $(PROFILE) --lib
	ln -sf libhip_attn.so $(LIBDIR)/libhip_attn.so.$(ABI)

# Builds the library and the C example, then runs it on the CPU backend (HIP_ATTN_BACKEND=cuda: on the GPU).
example: lib
	$(CC) $(CFLAGS) -Iinclude examples/c/example.c -L$(LIBDIR) -lhip_attn -lm -ldl -o $(LIBDIR)/example_c
	LD_LIBRARY_PATH=$(LIBDIR) $(LIBDIR)/example_c

# Builds, then installs the shared library (real file libhip_attn.so.$(VERSION), SONAME link .so.$(ABI), dev
# link .so), the static library, the header and hip_attn.pc; the libraries without debug info unless KEEP_DEBUG=1.
install: lib
	$(MAKE) --no-print-directory install-only

# Installs what $(LIBDIR) already holds without running cargo (packagers, and tests that run inside cargo).
install-only:
	install -d $(DESTDIR)$(libdir)/pkgconfig $(DESTDIR)$(includedir)
	install -m 755 $(LIBDIR)/libhip_attn.so $(DESTDIR)$(libdir)/libhip_attn.so.$(VERSION)
	$(if $(KEEP_DEBUG),,$(STRIP) --strip-unneeded $(DESTDIR)$(libdir)/libhip_attn.so.$(VERSION))
	ln -sf libhip_attn.so.$(VERSION) $(DESTDIR)$(libdir)/libhip_attn.so.$(ABI)
	ln -sf libhip_attn.so.$(ABI) $(DESTDIR)$(libdir)/libhip_attn.so
	install -m 644 $(LIBDIR)/libhip_attn.a $(DESTDIR)$(libdir)/libhip_attn.a
	$(if $(KEEP_DEBUG),,$(STRIP) --strip-debug $(DESTDIR)$(libdir)/libhip_attn.a)
	install -m 644 include/hip_attn.h $(DESTDIR)$(includedir)/hip_attn.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(libdir)|' -e 's|@INCLUDEDIR@|$(includedir)|' \
	    -e 's|@VERSION@|$(VERSION)|' hip_attn.pc.in > $(DESTDIR)$(libdir)/pkgconfig/hip_attn.pc

# The other languages' examples (examples/README.md), on the CPU backend unless HIP_ATTN_BACKEND=cuda. C++ builds
# against an installed copy in $(STAGE) through pkg-config, as an engine would against a system one.
CXX ?= c++
CXXFLAGS ?= -std=c++17 -Wall -Wextra -Werror -O2
STAGE := $(abspath $(TARGET_DIR))/stage
PC := PKG_CONFIG_PATH=$(STAGE)/lib/pkgconfig pkg-config
example-cpp: lib
	$(MAKE) --no-print-directory install-only PREFIX=$(STAGE)
	$(CXX) $(CXXFLAGS) $$($(PC) --cflags hip_attn) examples/cpp/example.cpp $$($(PC) --libs hip_attn) -ldl \
	    -o $(LIBDIR)/example_cpp
	LD_LIBRARY_PATH=$(STAGE)/lib $(LIBDIR)/example_cpp

# Context parallelism (examples/cpp/sharded_decode.cpp): shards one sequence over the GPUs with NCCL when there are
# enough of them (HIP_ATTN_BACKEND=cuda), else one after another on one device; checks itself against dense
# attention. SHARDED_ARGS="--bench 2097152 2" times decode at 2M tokens instead.
SHARDED_ARGS ?=
example-cpp-sharded: lib
	$(MAKE) --no-print-directory install-only PREFIX=$(STAGE)
	$(CXX) $(CXXFLAGS) $$($(PC) --cflags hip_attn) examples/cpp/sharded_decode.cpp $$($(PC) --libs hip_attn) -ldl \
	    -o $(LIBDIR)/sharded_decode
	LD_LIBRARY_PATH=$(STAGE)/lib $(LIBDIR)/sharded_decode $(SHARDED_ARGS)

example-go: lib
	cd examples/go && CGO_LDFLAGS=-L$(abspath $(LIBDIR)) LD_LIBRARY_PATH=$(abspath $(LIBDIR)) go test -v ./...

# Zig's caches go under target/, not into the source tree or $HOME.
example-zig: lib
	cd examples/zig && ZIG_GLOBAL_CACHE_DIR=$(abspath $(TARGET_DIR))/zig-global-cache \
	    zig build run test -Dlibdir=$(abspath $(LIBDIR)) --cache-dir $(abspath $(TARGET_DIR))/zig-cache \
	    --prefix $(abspath $(TARGET_DIR))/zig-out
