import json, struct, numpy as np, sys
def load_st(path):
    with open(path,'rb') as f:
        n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); data=f.read()
    out={}
    for k,v in h.items():
        if k=='__metadata__': continue
        a,b=v['data_offsets']; dt={'F16':np.float16,'F32':np.float32,'BF16':None}[v['dtype']]
        raw=data[a:b]
        if dt is None:
            u=np.frombuffer(raw,dtype=np.uint16).astype(np.uint32)<<16; arr=u.view(np.float32)
        else: arr=np.frombuffer(raw,dtype=dt).astype(np.float32)
        out[k]=arr.reshape(v['shape'])
    return out
def bf16(x):
    u=x.astype(np.float32).view(np.uint32); r=((u>>16)&1)+0x7fff; return ((u+r)&0xffff0000).view(np.float32)
def rnd(x,kind):
    if kind=='f32': return x
    if kind=='f16': return x.astype(np.float16).astype(np.float32)
    return bf16(x)
def forward(W,cfg,tokens,kv):
    H=cfg['hidden_size']; nh=cfg['num_attention_heads']; nkv=cfg['num_key_value_heads']; hd=cfg.get('head_dim',H//nh)
    L=cfg['num_hidden_layers']; eps=cfg['rms_norm_eps']; theta=cfg.get('rope_theta',1e4); win=cfg.get('sliding_window') or 0
    T=len(tokens); x=W['model.embed_tokens.weight'][tokens].astype(np.float32)
    inv=1.0/(theta**(np.arange(0,hd,2)/hd)); ang=np.outer(np.arange(T),inv); cos=np.cos(ang).astype(np.float32); sin=np.sin(ang).astype(np.float32)
    def rope(v):  # [T, heads, hd]
        a=v[...,:hd//2]; b=v[...,hd//2:]; c=cos[:,None,:]; s=sin[:,None,:]
        return np.concatenate([a*c-b*s, b*c+a*s],-1)
    def norm(v,w): return (w*(v/np.sqrt((v.astype(np.float64)**2).mean(-1,keepdims=True)+eps))).astype(np.float32)
    for l in range(L):
        p=f'model.layers.{l}.'
        h=norm(x,W[p+'input_layernorm.weight'])
        q=(h@W[p+'self_attn.q_proj.weight'].T).reshape(T,nh,hd); k=(h@W[p+'self_attn.k_proj.weight'].T).reshape(T,nkv,hd); v=(h@W[p+'self_attn.v_proj.weight'].T).reshape(T,nkv,hd)
        q=rope(q); k=rnd(rope(k),kv); v=rnd(v,kv)
        out=np.zeros((T,nh,hd),np.float32); g=nh//nkv
        for t in range(T):
            lo=max(0,t-win+1) if win else 0
            for hh in range(nh):
                kk=k[lo:t+1,hh//g]; s=(kk@q[t,hh])/np.sqrt(hd); s=np.exp(s-s.max()); s/=s.sum(); out[t,hh]=s@v[lo:t+1,hh//g]
        x=x+out.reshape(T,nh*hd)@W[p+'self_attn.o_proj.weight'].T
        h=norm(x,W[p+'post_attention_layernorm.weight'])
        gg=h@W[p+'mlp.gate_proj.weight'].T; uu=h@W[p+'mlp.up_proj.weight'].T
        x=x+((gg/(1+np.exp(-gg)))*uu)@W[p+'mlp.down_proj.weight'].T
    x=norm(x,W['model.norm.weight'])
    head=W.get('lm_head.weight',W['model.embed_tokens.weight'])
    return x@head.T
def loss(logits,tokens):
    l=logits[:-1].astype(np.float64); m=l.max(-1,keepdims=True); lse=m[:,0]+np.log(np.exp(l-m).sum(-1))
    return (lse-l[np.arange(len(tokens)-1),tokens[1:]]).mean()
def run(W,cfg,kind,texts=5,length=100,seed=1):
    rng=np.random.default_rng(seed); V=cfg['vocab_size']; rel=[]
    for i in range(texts):
        toks=np.concatenate([[1],rng.integers(3,V,length-1)])
        a=loss(forward(W,cfg,toks,'f32'),toks); b=loss(forward(W,cfg,toks,kind),toks)
        rel.append(abs(np.exp(b)-np.exp(a))/np.exp(a))
    return rel
cfg=json.load(open('/work/wt-gpu/bitdelta-core/src/test/resources/models/mistral-tiny/config.json'))
W=load_st('/work/wt-gpu/bitdelta-core/src/test/resources/models/mistral-tiny/model.safetensors')
print('mistral-tiny F16 KV: relative ppl differences', ['%.1e'%r for r in run(W,cfg,'f16')])
# synthetic BF16 llama like CudaDecoderModelTest.writeLlama
rng=np.random.default_rng(7); H,I,L,nh,nkv,hd,V=96,256,3,6,2,16,300
cfg2=dict(hidden_size=H,num_attention_heads=nh,num_key_value_heads=nkv,head_dim=hd,num_hidden_layers=L,rms_norm_eps=1e-5,rope_theta=1e4,vocab_size=V)
def U(shape,m): return bf16(rng.uniform(-m,m,shape).astype(np.float32))
W2={'model.embed_tokens.weight':U((V,H),1.0)}
shapes={'self_attn.q_proj':(nh*hd,H),'self_attn.k_proj':(nkv*hd,H),'self_attn.v_proj':(nkv*hd,H),'self_attn.o_proj':(H,nh*hd),'mlp.gate_proj':(I,H),'mlp.up_proj':(I,H),'mlp.down_proj':(H,I)}
for l in range(L):
    for n,sh in shapes.items(): W2[f'model.layers.{l}.{n}.weight']=U(sh,1.7/np.sqrt(sh[1]))
    W2[f'model.layers.{l}.input_layernorm.weight']=bf16(rng.uniform(0.7,1.3,H).astype(np.float32)); W2[f'model.layers.{l}.post_attention_layernorm.weight']=bf16(rng.uniform(0.7,1.3,H).astype(np.float32))
W2['model.norm.weight']=bf16(rng.uniform(0.7,1.3,H).astype(np.float32)); W2['lm_head.weight']=U((V,H),3/np.sqrt(H))
print('synthetic BF16 Llama, BF16 KV: relative ppl differences', ['%.1e'%r for r in run(W2,cfg2,'bf16')])
print('synthetic BF16 Llama, F16 KV: relative ppl differences', ['%.1e'%r for r in run(W2,cfg2,'f16')])
