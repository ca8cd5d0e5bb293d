# A student-style train_triplets (the reference delegates to the instructor's training loop).
def train_triplets(net, train_set, epochs=100, lr=0.01, batch_size=100, alpha=0.5,
                   checkpoint="triplet_net.pt", device=None, seed=0):
    import os.path
    from labtools.data import DeviceLoader
    from labtools.models import load_checkpoint, save_checkpoint
    device = device or "cpu"
    net = net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    history = {"loss": [], "loss_total": []}
    start = 0
    if os.path.exists(checkpoint):
        net, record = load_checkpoint(checkpoint, net, device)
        history = record["history"] or history
        start = record["epochs"]
    images, labels = train_set.tensors
    loader = DeviceLoader(images, labels, batch_size=batch_size, device=device, seed=seed)
    loader.set_epoch(start)
    net.train()
    for epoch in range(start, epochs):
        total, batches = 0.0, 0
        for x, y in loader:
            loss = triplet_loss(net.features(x), y, alpha=alpha)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
            batches += 1
        history["loss"].append(total / max(batches, 1))
        history["loss_total"].append(total)
        print(f"epoch {epoch + 1}: triplet loss {total:.3f}")
        save_checkpoint(checkpoint, net, dataset="MNIST", loss="triplet", seed=seed, epochs=epoch + 1,
                        history=history, optimizer=optimizer)
    return history
