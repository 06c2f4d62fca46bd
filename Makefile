# Convenience targets around cargo. The library's SONAME is libhip_attn.so.$(ABI), so the build directory gets
# that link too, and programs linked against it run with LD_LIBRARY_PATH pointing there.
ABI := 1
PROFILE ?= release
CARGO ?= cargo
TARGET_DIR ?= target
LIBDIR := $(TARGET_DIR)/$(PROFILE)
CC ?= cc
CFLAGS ?= -std=c11 -Wall -Wextra -Werror -O2

.PHONY: lib example clean-example
lib:
	$(CARGO) build --profile $(PROFILE) --lib
	ln -sf libhip_attn.so $(LIBDIR)/libhip_attn.so.$(ABI)

# Builds the library and the C example, then runs it on the CPU backend.
example: lib
	$(CC) $(CFLAGS) -Iinclude examples/c/example.c -L$(LIBDIR) -lhip_attn -lm -o $(LIBDIR)/example_c
	LD_LIBRARY_PATH=$(LIBDIR) $(LIBDIR)/example_c
