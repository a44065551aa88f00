/* ops_causal: the causal (lower-triangular) self-attention of CLIP's text
 * tower, forward only. Same layout and conventions as op_attention_fwd in
 * ops.h: qkv (B,T,3D) per token [q | k | v]; out (B,T,D) heads concatenated;
 * att (B,NH,T,T) softmax probabilities, zero above the diagonal (token t
 * attends to tokens 0..t); scale 1/sqrt(HD). */
#ifndef TD_OPS_CAUSAL_H
#define TD_OPS_CAUSAL_H

void op_attention_causal_fwd(float *out, float *att, const float *qkv, int B, int T, int D,
                             int NH);

#endif
