/* Unicode Normalization Form C, for tokenizers whose normalizer declares it. */
#ifndef TC_TOK_NFC_H
#define TC_TOK_NFC_H

#include <stddef.h>
#include <stdint.h>

extern const char tok_nfc_unicode_version[];
extern const uint32_t tok_nfc_ccc[];
extern const size_t tok_nfc_ccc_n;
extern const uint32_t tok_nfc_dec[][3];
extern const size_t tok_nfc_dec_n;
extern const uint32_t tok_nfc_dec_cps[];
extern const uint32_t tok_nfc_comp[][3];
extern const size_t tok_nfc_comp_n;

/* Normalizes n bytes of UTF-8 into *out (grown as needed, capacity *cap);
 * *out_len bytes result; *cps (capacity *cps_cap) is scratch space.  Returns 0, -1
 * when out of memory, or 1 + the byte offset of invalid UTF-8. */
long tok_nfc(const char *s, size_t n, char **out, size_t *cap, size_t *out_len, uint32_t **cps,
             size_t *cps_cap);

#endif
