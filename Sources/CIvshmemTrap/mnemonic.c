/* Names an x86-64 instruction the trap handler cannot emulate, for the message that stops the
 * process: "lock or", "rep stos", "xchg", "movdqu" — enough for a driver author to find the
 * access in their code. Not a disassembler: prefixes, the one- and two-byte opcode families a
 * compiler emits for memory operands, and "?" for the rest. Async-signal-safe (no allocation,
 * no stdio). */
#include "ivshmem2_trap.h"
#include <string.h>

static void append(char *out, size_t n, const char *s) {
    size_t len = strlen(out);
    while (*s && len + 1 < n) out[len++] = *s++;
    out[len] = 0;
}

static const char *const alu[8] = {"add", "or", "adc", "sbb", "and", "sub", "xor", "cmp"};
static const char *const shift[8] = {"rol", "ror", "rcl", "rcr", "shl", "shr", "sal", "sar"};
static const char *const group3[8] = {"test", "test", "not", "neg", "mul", "imul", "div", "idiv"};
static const char *const group5[8] = {"inc", "dec", "call", "call far", "jmp", "jmp far", "push", "?"};

int ivs_mnemonic(const uint8_t *p, char *out, size_t n) {
    if (!n) return 0;
    out[0] = 0;
    int i = 0;
    /* Prefixes. */
    for (;; i++) {
        uint8_t b = p[i];
        if (b == 0xF0) append(out, n, "lock ");
        else if (b == 0xF3) append(out, n, "rep ");
        else if (b == 0xF2) append(out, n, "repne ");
        else if (b == 0x66 || b == 0x67 || b == 0x2E || b == 0x36 || b == 0x3E || b == 0x26 || b == 0x64 || b == 0x65) continue;
        else break;
        if (i > 14) return 0;
    }
    if ((p[i] & 0xF0) == 0x40) i++; /* REX */
    uint8_t op = p[i];
    uint8_t reg = (p[i + 1] >> 3) & 7;
    const char *name = "?";
    if (op < 0x40 && (op & 7) < 6) name = alu[op >> 3];
    else if (op == 0x0F) {
        uint8_t op2 = p[i + 1];
        reg = (p[i + 2] >> 3) & 7;
        switch (op2) {
        case 0xB0: case 0xB1: name = "cmpxchg"; break;
        case 0xC0: case 0xC1: name = "xadd"; break;
        case 0xC7: name = reg == 1 ? "cmpxchg8b/16b" : "?"; break;
        case 0xAB: case 0xB3: case 0xBB: case 0xA3: case 0xBA: name = "bt/bts/btr/btc"; break;
        case 0x10: case 0x11: name = "movups/movss/movupd/movsd"; break;
        case 0x28: case 0x29: name = "movaps/movapd"; break;
        case 0x6F: case 0x7F: name = "movq/movdqa/movdqu"; break;
        case 0x7E: case 0xD6: name = "movd/movq"; break;
        case 0xC3: name = "movnti"; break;
        case 0xE7: case 0x2B: name = "movntdq/movntps"; break;
        case 0x18: case 0x0D: name = "prefetch"; break;
        case 0xAE: name = "clflush/fence"; break;
        default: name = "? (two-byte opcode)"; break;
        }
    } else {
        switch (op) {
        case 0x80: case 0x81: case 0x83: name = alu[reg]; break;
        case 0x84: case 0x85: case 0xA8: case 0xA9: name = "test"; break;
        case 0x86: case 0x87: name = "xchg"; break;
        case 0x8F: name = "pop"; break;
        case 0xA4: case 0xA5: name = "movs"; break;
        case 0xA6: case 0xA7: name = "cmps"; break;
        case 0xAA: case 0xAB: name = "stos"; break;
        case 0xAC: case 0xAD: name = "lods"; break;
        case 0xC0: case 0xC1: case 0xD0: case 0xD1: case 0xD2: case 0xD3: name = shift[reg]; break;
        case 0xF6: case 0xF7: name = group3[reg]; break;
        case 0xFE: case 0xFF: name = group5[reg]; break;
        case 0xD8: case 0xD9: case 0xDA: case 0xDB: case 0xDC: case 0xDD: case 0xDE: case 0xDF: name = "x87 (fld/fst…)"; break;
        default: if (op >= 0xC4 && op <= 0xC5) name = "AVX (VEX-encoded)"; else if (op == 0x62) name = "AVX-512 (EVEX-encoded)"; break;
        }
    }
    append(out, n, name);
    return 1;
}
